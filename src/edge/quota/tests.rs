use super::*;

#[test]
fn a_tenant_over_quota_does_not_affect_another() {
    let a = TenantId::parse("a").unwrap();
    let b = TenantId::parse("b").unwrap();
    let five = NonZeroU32::new(5).unwrap();
    let quotas = Quotas::new([(&a, five), (&b, five)]);
    for _ in 0..5 {
        assert!(quotas.check(&a).is_ok());
    }
    let refused = quotas.check(&a).unwrap_err();
    assert!(refused.retry_after_s >= 1);
    for _ in 0..5 {
        assert!(quotas.check(&b).is_ok());
    }
}
