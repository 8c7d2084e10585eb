//! Export slots: per-tenant and server-wide limits, given back on drop.

use super::*;

fn id(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn slots(max: usize, per_tenant_max: usize) -> ExportSlots {
    ExportSlots::new(ExportLimits {
        max,
        per_tenant_max,
        write_timeout: Duration::from_secs(1),
    })
}

fn busy(result: Result<ExportSlot, ApiError>) -> &'static str {
    match result {
        Err(ApiError::ExportsBusy { limit }) => limit,
        Err(other) => panic!("expected ExportsBusy, got {other:?}"),
        Ok(_) => panic!("expected ExportsBusy, got a slot"),
    }
}

#[test]
fn a_tenant_gets_its_share_and_the_server_its_total() {
    let slots = slots(3, 2);
    let a1 = slots.acquire(&id("a")).unwrap();
    let _a2 = slots.acquire(&id("a")).unwrap();
    assert!(busy(slots.acquire(&id("a"))).contains("tenant"));
    let _b1 = slots.acquire(&id("b")).unwrap();
    // The server is full: b is under its own limit but refused.
    assert!(busy(slots.acquire(&id("b"))).contains("server"));
    assert!(busy(slots.acquire(&id("c"))).contains("server"));
    assert_eq!(slots.running(), 3);
    drop(a1);
    assert_eq!(slots.running(), 2);
    let _c1 = slots.acquire(&id("c")).unwrap();
    assert!(busy(slots.acquire(&id("a"))).contains("server"));
}

#[test]
fn slots_come_back_when_dropped_on_any_thread() {
    let slots = slots(2, 2);
    let taken: Vec<ExportSlot> = (0..2).map(|_| slots.acquire(&id("a")).unwrap()).collect();
    std::thread::spawn(move || drop(taken)).join().unwrap();
    assert_eq!(slots.running(), 0);
    for _ in 0..2 {
        std::mem::forget(slots.acquire(&id("a")).unwrap());
    }
    assert!(busy(slots.acquire(&id("a"))).contains("tenant"));
}
