//! A cursor over MessagePack bytes, for the fold's fast reads of the writer's own layouts
//! (`codec::envelope`, `schema::fast`): every read is bounds-checked and `None` past the end or
//! on any marker it does not expect, so a caller falls back to serde.

/// First byte of a fixmap (its length in the low four bits).
pub(crate) const FIXMAP: u8 = 0x80;
const FIXSTR: u8 = 0xa0;
const FIXSTR_LEN_MASK: u8 = 0x1f;

/// A cursor over MessagePack bytes; every read is bounds-checked and `None` past the end.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// Whether every byte was read.
    pub(crate) fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    /// A big-endian unsigned integer of `n` bytes (n <= 8).
    pub(crate) fn be(&mut self, n: usize) -> Option<u64> {
        let bytes = self.take(n)?;
        Some(bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b)))
    }

    pub(crate) fn len(&mut self, n: usize) -> Option<usize> {
        usize::try_from(self.be(n)?).ok()
    }

    /// A non-negative integer in any of MessagePack's unsigned forms.
    pub(crate) fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            b @ 0x00..=0x7f => Some(u64::from(b)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            _ => None,
        }
    }

    /// The bytes of a string in any of MessagePack's str forms, not checked to be UTF-8.
    pub(crate) fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            b if b & !FIXSTR_LEN_MASK == FIXSTR => usize::from(b & FIXSTR_LEN_MASK),
            0xd9 => self.len(1)?,
            0xda => self.len(2)?,
            0xdb => self.len(4)?,
            _ => return None,
        };
        self.take(len)
    }

    /// A string in any of MessagePack's str forms, checked to be UTF-8.
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.str_bytes()?).ok()
    }

    /// A byte string in any of MessagePack's bin forms.
    pub(crate) fn bin(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            0xc4 => self.len(1)?,
            0xc5 => self.len(2)?,
            0xc6 => self.len(4)?,
            _ => return None,
        };
        self.take(len)
    }

    /// The key `key`: a fixstr's marker and name (inlined, so that each call compares a
    /// constant).
    #[inline(always)]
    pub(crate) fn key(&mut self, key: &[u8]) -> Option<()> {
        (self.take(key.len())? == key).then_some(())
    }
}
