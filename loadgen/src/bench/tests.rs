//! Tests of the section splicing and the date, which need no server.

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
