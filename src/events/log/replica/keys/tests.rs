//! The key stream against a real nats-server 2.15: values shared between nodes, created once,
//! replaced and deleted with the server's erase (the old bytes are in none of its files), and a
//! node with another cluster key refused.

use std::path::Path;

use super::*;
use crate::events::keyring::Keyring;
use crate::events::log::replica::tests::JetStreamServer;
use crate::events::log::replica::ReplicaOptions;

fn replica(server: &JetStreamServer, node: &str) -> Replica {
    let opts = ReplicaOptions {
        stream: "KEYLOG".into(),
        replicas: 1,
        node: node.into(),
        cluster: true,
    };
    let url = server.url.clone();
    Replica::connect(&opts, || async move {
        async_nats::connect(url).await.map_err(|e| e.to_string())
    })
    .unwrap()
}

fn key(byte: u8) -> DataKey {
    DataKey::from_slice(&[byte; 32]).unwrap()
}

/// Whether any file under `dir` holds `needle`.
fn files_hold(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                return true;
            }
        }
    }
    false
}

/// The stored (sealed) bytes of `subject`'s last value.
fn stored(replica: &Replica, keys: &SharedKeys, subject: &str) -> Vec<u8> {
    let stream = keys.stream.clone();
    let subject = subject.to_owned();
    replica.block_on(async move {
        let message = stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .unwrap();
        message.payload.to_vec()
    })
}

#[test]
fn a_secret_is_made_once_and_its_replaced_and_deleted_values_are_erased_from_the_servers_files() {
    let server = JetStreamServer::start();
    let node = replica(&server, "a");
    let keys = node.shared_keys(key(7)).unwrap();
    let subject = keys.tenant_subject("acme", "data_kek");
    assert!(keys.get(&subject).unwrap().is_none());
    assert!(matches!(
        keys.create(&subject, b"first").unwrap(),
        Created::Made
    ));
    match keys.create(&subject, b"other").unwrap() {
        Created::Found(found) => assert_eq!(found.as_slice(), b"first"),
        Created::Made => panic!("a taken subject was made again"),
    }
    let first = stored(&node, &keys, &subject);
    assert!(!first.windows(5).any(|w| w == b"first"), "stored sealed");
    assert!(
        files_hold(&server.store_dir(), &first),
        "the grep finds a stored value"
    );

    keys.set(&subject, b"second").unwrap();
    assert_eq!(keys.get(&subject).unwrap().unwrap().as_slice(), b"second");
    let second = stored(&node, &keys, &subject);
    assert!(
        !files_hold(&server.store_dir(), &first),
        "the replaced value was erased"
    );
    assert!(files_hold(&server.store_dir(), &second));

    assert!(keys.delete(&subject).unwrap());
    assert!(keys.get(&subject).unwrap().is_none());
    assert!(
        !files_hold(&server.store_dir(), &second),
        "the deleted value was erased"
    );
    assert!(!keys.delete(&subject).unwrap());
}

#[test]
fn two_nodes_share_the_tenants_keys_until_it_is_deleted_and_another_cluster_key_is_refused() {
    let server = JetStreamServer::start();
    let a = Keyring::shared(replica(&server, "a").shared_keys(key(1)).unwrap());
    let b = Keyring::shared(replica(&server, "b").shared_keys(key(1)).unwrap());
    let made = a.user_pseudonym("acme", "ada", true).unwrap().unwrap();
    assert_eq!(b.user_pseudonym("acme", "ada", false).unwrap(), Some(made));
    assert_eq!(b.user_pseudonym("bigcorp", "ada", false).unwrap(), None);
    // Offboarding on one node destroys the tenant's shared keys for every node.
    let acme = crate::tenancy::fixtures::id("acme");
    assert_eq!(a.destroy_tenant(&acme).unwrap(), 1);
    b.forget_tenant(&acme);
    assert_eq!(b.user_pseudonym("acme", "ada", false).unwrap(), None);

    let refused = replica(&server, "c")
        .shared_keys(key(2))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("cluster key") && refused.contains("TENANTRY_CLUSTER_KEY"),
        "{refused}"
    );
}

#[test]
fn a_value_copied_to_another_subject_does_not_open() {
    let server = JetStreamServer::start();
    let node = replica(&server, "a");
    let keys = node.shared_keys(key(3)).unwrap();
    let acme = keys.tenant_subject("acme", "data_kek");
    keys.set(&acme, b"acme's").unwrap();
    let sealed = stored(&node, &keys, &acme);
    let bigcorp = keys.tenant_subject("bigcorp", "data_kek");
    let js = node.jetstream();
    let at = bigcorp.clone();
    node.block_on(async move {
        js.publish(at, sealed.into()).await.unwrap().await.unwrap();
    });
    let err = keys.get(&bigcorp).unwrap_err();
    assert!(matches!(err, SharedKeyError::WrongKey { .. }), "{err}");
}

#[test]
fn migrating_copies_a_tenants_keys_once_and_refuses_another_data_dirs() {
    let server = JetStreamServer::start();
    let keys = replica(&server, "a").shared_keys(key(4)).unwrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let first = crate::events::log::replica::tests::keyring(dirs[0].path());
    let other = crate::events::log::replica::tests::keyring(dirs[1].path());
    let pseudonym = first.user_pseudonym("acme", "ada", true).unwrap();
    other.user_pseudonym("acme", "ada", true).unwrap();
    let acme = crate::tenancy::fixtures::id("acme");
    assert_eq!(first.copy_to_shared(&acme, &keys).unwrap(), 1);
    assert_eq!(
        first.copy_to_shared(&acme, &keys).unwrap(),
        0,
        "the same key again"
    );
    let err = other.copy_to_shared(&acme, &keys).unwrap_err().to_string();
    assert!(err.contains("already holds another value"), "{err}");
    let shared = Keyring::shared(replica(&server, "b").shared_keys(key(4)).unwrap());
    assert_eq!(
        shared.user_pseudonym("acme", "ada", false).unwrap(),
        pseudonym
    );
}
