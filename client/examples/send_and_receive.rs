//! Two users exchange messages through a running `confab serve`
//! (`make run`): sign up (or log in) through the HTTP API, connect both
//! with the SDK, send, receive, answer, and save what resumes the next run.
//!
//! ```sh
//! make run   # in another terminal
//! cargo run -p confab-client --example send_and_receive
//! ```
//!
//! `CONFAB_API` and `CONFAB_URL` point it elsewhere; for QUIC or wss to a
//! development server, also trust its generated certificate:
//!
//! ```sh
//! CONFAB_URL=quic://127.0.0.1:8443 CONFAB_CA=<data dir>/tls/self-signed.crt \
//!     cargo run -p confab-client --example send_and_receive
//! ```

mod support;

use confab_client::{Client, ClientEvent, Events, Message, SendAck, Target, UserId};
use support::{Api, Saved};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "confab_client=info".into()),
        )
        .init();
    let (api_base, url) = support::endpoints();
    let api = Api::new(&api_base);
    let ada = api.account("ada_example", "correct horse battery").await?;
    let bob = api.account("bob_example", "correct horse battery").await?;
    println!("ada is user {}, bob is user {}", ada.user_id, bob.user_id);

    let (ada_saved, bob_saved) = (Saved::load("ada_example"), Saved::load("bob_example"));
    let (ada_client, mut ada_events) = Client::connect(ada_saved.config(&url, &ada))?;
    let (bob_client, mut bob_events) = Client::connect(bob_saved.config(&url, &bob))?;

    // A send waits for the connection by itself, and resolves once the
    // server has stored the message, however many reconnects that takes.
    let ack = ada_client
        .send(Target::User(UserId(bob.user_id)), "Hello Bob, this is Ada.")
        .await?;
    report("ada", &ack);
    let m = wait_for(&mut bob_events, &ack).await?;
    println!("bob received {:?} from user {}", m.text, m.sender_id);
    // Tell ada it was read, and answer in the same channel.
    bob_client.read(m.channel_id, m.seq)?;
    let answer = bob_client
        .send(Target::Channel(m.channel_id), "Hi Ada! Bob here.")
        .await?;
    report("bob", &answer);
    let m = wait_for(&mut ada_events, &answer).await?;
    println!("ada received {:?}", m.text);

    // What makes the next run resume where this one stopped: once closed,
    // the rest of the events (here only cursor steps past our own acks)
    // are drained, so the saved cursor covers everything.
    for (name, mut events, client) in [
        ("ada_example", ada_events, ada_client),
        ("bob_example", bob_events, bob_client),
    ] {
        client.close().await;
        while events.recv().await.is_some() {}
        Saved {
            cursor: events.cursor().into(),
            next_client_msg_id: client.next_client_msg_id(),
        }
        .store(name);
    }
    Ok(())
}

fn report(who: &str, ack: &SendAck) {
    println!(
        "{who}: stored as #{} in channel {}{}",
        ack.seq,
        ack.channel_id,
        if ack.duplicate {
            " (a duplicate: this client message id was used before; keep the saved state)"
        } else {
            ""
        }
    );
}

/// Events until the message `ack` acknowledged arrives; messages of earlier
/// runs (replayed to a device without saved state) go by first.
async fn wait_for(
    events: &mut Events,
    ack: &SendAck,
) -> Result<Message, Box<dyn std::error::Error>> {
    while let Some(event) = events.recv().await {
        match event {
            ClientEvent::Message(m) if m.channel_id == ack.channel_id && m.seq == ack.seq => {
                return Ok(m)
            }
            ClientEvent::Message(m) => println!("(earlier: {:?})", m.text),
            ClientEvent::Connected(w) => println!("user {} connected", w.user_id),
            ClientEvent::Disconnected { reason } => println!("disconnected: {reason}"),
            ClientEvent::Refused { code, message } => {
                return Err(format!("the server refused the session: {code} {message}").into())
            }
            _ => {}
        }
    }
    Err("the client closed".into())
}
