//! The HTTP upgrade parser on arbitrary bytes: never panics, answers the
//! same whether the request arrives whole or in reads of any size (the
//! first byte picks it), accepts only within the size limit, and every
//! answer is a complete HTTP response.
#![no_main]

use confab_ws::parse_upgrade;
use libfuzzer_sys::fuzz_target;

const PATH: &str = "/v1/ws";
const MAX: usize = 2048;

fuzz_target!(|input: &[u8]| {
    let Some((&c, data)) = input.split_first() else {
        return;
    };
    let whole = parse_upgrade(data, PATH, MAX);
    // Fed as a client sends it, `chunk` bytes per read: the first verdict
    // that is not "need more" must be the one the whole request gets.
    let chunk = usize::from(c.max(1));
    let mut first = None;
    let mut end = 0;
    while end < data.len() {
        end = (end + chunk).min(data.len());
        match parse_upgrade(&data[..end], PATH, MAX) {
            Ok(None) => continue,
            verdict => {
                first = Some(verdict);
                break;
            }
        }
    }
    match (&whole, first) {
        (Ok(None), None) => {}
        (w, Some(f)) => assert_eq!(format!("{w:?}"), format!("{f:?}")),
        (w, None) => panic!("whole: {w:?}, in pieces: need more"),
    }
    match whole {
        Ok(Some(u)) => {
            assert!(u.consumed <= data.len() && u.consumed <= MAX);
            assert!(u.response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(u.response.ends_with(b"\r\n\r\n"));
            assert_eq!(u.path, PATH);
        }
        Ok(None) => assert!(data.len() < MAX),
        Err(e) => {
            let r = e.response();
            assert!(r.starts_with(b"HTTP/1.1 4") || r.starts_with(b"HTTP/1.1 5"));
            assert!(r.windows(4).any(|w| w == b"\r\n\r\n"));
        }
    }
});
