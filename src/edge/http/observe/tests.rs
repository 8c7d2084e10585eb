//! The bounded request log line.

use super::*;

#[test]
fn long_paths_are_cut_on_a_char_boundary_and_short_ones_kept() {
    assert_eq!(logged_path("/api/v1/sessions"), "/api/v1/sessions");
    let exact = "a".repeat(LOGGED_PATH_BYTES_MAX);
    assert_eq!(logged_path(&exact), exact.as_str());
    // 'é' is two bytes: with one leading byte, the limit falls inside a character.
    let path = format!("/{}", "é".repeat(LOGGED_PATH_BYTES_MAX));
    let logged = logged_path(&path);
    let (kept, note) = logged.split_once('…').unwrap();
    assert!(kept.len() <= LOGGED_PATH_BYTES_MAX && kept.len() >= LOGGED_PATH_BYTES_MAX - 1);
    assert!(path.starts_with(kept));
    assert_eq!(note, format!("({} bytes)", path.len()));
}

#[test]
fn the_budget_allows_so_many_lines_per_window_and_reports_the_rest() {
    let budget = LogBudget::new(3, Duration::from_secs(1));
    let t0 = Instant::now();
    assert_eq!(budget.allow(t0), Some(0));
    assert_eq!(budget.allow(t0), Some(0));
    assert_eq!(budget.allow(t0), Some(0));
    for _ in 0..10 {
        assert_eq!(budget.allow(t0 + Duration::from_millis(500)), None);
    }
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(budget.allow(t1), Some(10));
    assert_eq!(budget.allow(t1), Some(0));
}
