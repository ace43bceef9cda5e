//! Small pieces of a run: picking from the profile's distributions, error
//! names for the ledger, URLs, the progress bar and the open-file limit.

use super::*;

pub(super) fn error_name(e: &ClientError) -> String {
    match e {
        ClientError::Server { code, .. } | ClientError::Refused { code, .. } => {
            code.name().to_owned()
        }
        ClientError::InvalidText(code) => code.name().to_owned(),
        ClientError::TooManyPending(_) => "CLIENT_TOO_MANY_PENDING".into(),
        ClientError::Closed => "CLIENT_CLOSED".into(),
        other => format!("CLIENT_{}", short_kind(&format!("{other:?}"))),
    }
}

pub(super) fn short_kind(debug: &str) -> String {
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("ERROR")
        .to_uppercase()
}

pub(super) fn pick_bucket(rng: &mut StdRng, buckets: &[Bucket]) -> u32 {
    let total: f64 = buckets.iter().map(|b| b.weight).sum();
    let mut x = rng.random::<f64>() * total;
    for b in buckets {
        if x < b.weight {
            return rng.random_range(b.min..=b.max);
        }
        x -= b.weight;
    }
    let b = buckets.last().unwrap();
    rng.random_range(b.min..=b.max)
}

pub(super) fn pick_devices(rng: &mut StdRng, devices: &[(u32, f64)]) -> u32 {
    let total: f64 = devices.iter().map(|d| d.1).sum();
    let mut x = rng.random::<f64>() * total;
    for &(n, w) in devices {
        if x < w {
            return n;
        }
        x -= w;
    }
    devices.last().unwrap().0
}

/// User `u`'s account with its current access token: setting up a large
/// run can outlast the one it signed up with.
pub(super) fn current(users: &[User], tokens: &Tokens, u: usize) -> Account {
    Account {
        token: tokens.access(u),
        ..users[u].account.clone()
    }
}

/// Six base-36 characters from the clock and the process id.
pub(crate) fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ (u64::from(std::process::id()) << 40);
    (0..6)
        .map(|_| {
            let c = b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize];
            x /= 36;
            char::from(c)
        })
        .collect()
}

pub(super) fn transport_urls(d: &Discovery, choice: TransportChoice) -> Result<Vec<String>> {
    let ws = d.websocket_url.clone();
    if choice == TransportChoice::Ws && !ws.starts_with("ws://") {
        bail!("the server offers no plain ws:// to this client ({ws}); use --transport wss");
    }
    let wss = d.secure_websocket_url.clone();
    let quic = format!("quic://{}", d.quic_addr);
    Ok(match choice {
        TransportChoice::Ws => vec![ws],
        TransportChoice::Wss => vec![wss],
        TransportChoice::Quic => vec![quic],
        TransportChoice::Mix if ws.starts_with("ws://") => vec![ws, wss, quic],
        TransportChoice::Mix => vec![wss, quic],
    })
}

pub(super) fn progress(quiet: bool, total: Duration) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total.as_secs_f64().ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Raises the open-file limit towards what the run needs (one descriptor
/// per TCP connection; QUIC shares one UDP socket per client endpoint).
pub(crate) fn raise_fd_limit(want: u64) {
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got < want => tracing::warn!(
            "open-file limit is {got}, below the {want} this run may need (raise the hard limit)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    }
}
