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

/// The URLs devices connect to, in turn: every node discovery lists (one
/// node unless the server is a cluster), each over the chosen transports,
/// interleaved so that consecutive devices land on different nodes.
pub(super) fn transport_urls(d: &Discovery, choice: TransportChoice) -> Result<Vec<String>> {
    let nodes: Vec<(String, String, String)> = if d.gateways.is_empty() {
        vec![(
            d.websocket_url.clone(),
            d.secure_websocket_url.clone(),
            d.quic_addr.clone(),
        )]
    } else {
        d.gateways
            .iter()
            .map(|g| {
                (
                    g.websocket_url.clone(),
                    g.secure_websocket_url.clone(),
                    g.quic_addr.clone(),
                )
            })
            .collect()
    };
    let plain = nodes.iter().all(|(ws, _, _)| ws.starts_with("ws://"));
    if choice == TransportChoice::Ws && !plain {
        bail!(
            "the server offers no plain ws:// to this client ({}); use --transport wss",
            d.websocket_url
        );
    }
    let transports: &[usize] = match choice {
        TransportChoice::Ws => &[0],
        TransportChoice::Wss => &[1],
        TransportChoice::Quic => &[2],
        TransportChoice::Mix if plain => &[0, 1, 2],
        TransportChoice::Mix => &[1, 2],
    };
    let mut urls = Vec::new();
    for &t in transports {
        for (ws, wss, quic) in &nodes {
            urls.push(match t {
                0 => ws.clone(),
                1 => wss.clone(),
                _ => format!("quic://{quic}"),
            });
        }
    }
    Ok(urls)
}

/// The other nodes' URLs of `url`'s transport: where a device goes when
/// its node is gone.
pub(super) fn fallbacks(urls: &[String], url: &str) -> Vec<String> {
    let scheme = url.split("://").next().unwrap_or_default();
    urls.iter()
        .filter(|u| u.as_str() != url && u.split("://").next() == Some(scheme))
        .cloned()
        .collect()
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
