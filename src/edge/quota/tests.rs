use super::*;

#[test]
fn a_tenant_over_quota_does_not_affect_another() {
    let a = TenantId::parse("a").unwrap();
    let b = TenantId::parse("b").unwrap();
    let five = NonZeroU32::new(5).unwrap();
    let quotas = Quotas::new([(&a, five, five), (&b, five, five)]);
    for _ in 0..5 {
        assert!(quotas.check(&a).is_ok());
    }
    let refused = quotas.check(&a).unwrap_err();
    assert!(refused.retry_after_s >= 1);
    for _ in 0..5 {
        assert!(quotas.check(&b).is_ok());
    }
}

#[test]
fn a_burst_smaller_than_the_rate_admits_only_the_burst_at_once() {
    let a = TenantId::parse("a").unwrap();
    let rate = NonZeroU32::new(1000).unwrap();
    let burst = NonZeroU32::new(3).unwrap();
    let quotas = Quotas::new([(&a, rate, burst)]);
    for _ in 0..3 {
        assert!(quotas.check(&a).is_ok());
    }
    assert!(
        quotas.check(&a).is_err(),
        "a 4th request at once passed a burst of 3"
    );
    // The bucket refills at the rate: one request per ms at 1000/s.
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(quotas.check(&a).is_ok());
}
