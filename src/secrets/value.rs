//! [`SecretValue`]: the plaintext of a secret, wrapped so it cannot leak by accident.
//!
//! Invariants: `Debug` and `Display` print `[redacted]`; the bytes are overwritten with zeros when
//! the value is dropped (best effort: copies the caller made with [`SecretValue::expose`] are the
//! caller's to wipe). There is no `Clone`, `Serialize` or `PartialEq`, so a value is never copied,
//! encoded or compared by accident.

use std::fmt;

use zeroize::Zeroizing;

/// The plaintext of a secret. Read it with [`SecretValue::expose`], only where it is used.
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps `bytes`; they are wiped when the value is dropped.
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(Zeroizing::new(bytes))
    }

    /// The plaintext. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The buffer, for filling in place without copies (reading stdin).
    pub(crate) fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Length in bytes (not secret: the ciphertext on disk reveals it too).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const REDACTED: &str = "[redacted]";

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}
