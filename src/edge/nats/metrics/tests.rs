use super::*;
use crate::actors::runtime::RuntimeMetrics;

#[test]
fn refusals_are_counted_per_tenant_and_code_on_the_metrics_page() {
    let metrics = NatsMetrics::default();
    let (t1, t2) = (
        TenantId::parse("t1").unwrap(),
        TenantId::parse("t2").unwrap(),
    );
    metrics.count_refused(&t1, "quota_exceeded");
    metrics.count_refused(&t1, "quota_exceeded");
    metrics.count_refused(&t2, "overloaded");
    let mut registry = MetricsRegistry::new();
    metrics.register(&mut registry);
    let text = registry.render(&RuntimeMetrics::default()).unwrap();
    for series in [
        r#"tenantry_nats_refused_total{tenant="t1",code="quota_exceeded"} 2"#,
        r#"tenantry_nats_refused_total{tenant="t2",code="overloaded"} 1"#,
    ] {
        assert!(text.contains(series), "{series} not in\n{text}");
    }
    assert!(
        !text.contains(r#"tenant="t2",code="quota_exceeded""#),
        "{text}"
    );
}

#[test]
fn a_forgotten_tenant_loses_its_refusal_series_and_no_other() {
    let metrics = NatsMetrics::default();
    let (t1, t2) = (
        TenantId::parse("t1").unwrap(),
        TenantId::parse("t2").unwrap(),
    );
    metrics.count_refused(&t1, "quota_exceeded");
    metrics.count_refused(&t1, "overloaded");
    metrics.count_refused(&t2, "overloaded");
    let mut registry = MetricsRegistry::new();
    metrics.register(&mut registry);
    let forget = metrics.forget_tenant();
    assert_eq!(forget(&t1), 2);
    assert_eq!(forget(&t1), 0, "nothing left the second time");
    let text = registry.render(&RuntimeMetrics::default()).unwrap();
    assert!(!text.contains(r#"tenant="t1""#), "{text}");
    assert!(
        text.contains(r#"tenantry_nats_refused_total{tenant="t2",code="overloaded"} 1"#),
        "{text}"
    );
}
