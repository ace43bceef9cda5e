//! Tests of the section splicing, the date and the step verdicts, which
//! need no server.

use super::*;

#[test]
fn the_section_is_replaced_and_the_rest_kept() {
    let new = format!("{BEGIN}\nnew\n{END}");
    let first = replace_section("# Benchmarks\n\nkeep me\n", &new).unwrap();
    assert_eq!(first, format!("# Benchmarks\n\nkeep me\n\n{new}\n"));
    let newer = format!("{BEGIN}\nnewer\n{END}");
    let second = replace_section(&(first.clone() + "after\n"), &newer).unwrap();
    assert_eq!(
        second,
        format!("# Benchmarks\n\nkeep me\n\n{newer}\nafter\n")
    );
    assert!(replace_section(&format!("x {END} y {BEGIN}"), &new).is_err());
    assert!(replace_section(&format!("x {BEGIN} y"), &new).is_err());
}

#[test]
fn civil_date() {
    let d = today();
    assert_eq!(d.len(), 10);
    assert!(d.starts_with("20"), "{d}");
}

#[test]
fn the_ack_target_follows_the_sync_mode() {
    use super::search::within_ack_target;
    // batch: the fsync p99 plus 2 ms.
    assert!(within_ack_target("batch", 4_363, Some(2_363)));
    assert!(!within_ack_target("batch", 4_364, Some(2_363)));
    // A batch step without a measured fsync cannot be judged.
    assert!(!within_ack_target("batch", 100, None));
    // none: 2 ms flat, whatever the fsync figure says.
    assert!(within_ack_target("none", 2_000, None));
    assert!(!within_ack_target("none", 2_001, Some(50_000)));
}
