//! Three users chat in a group through a running `confab serve`
//! (`make run`): the group is created through the HTTP API, then everyone
//! talks through the SDK: typing notices, messages, read receipts, presence
//! and a page of history.
//!
//! ```sh
//! make run   # in another terminal
//! cargo run -p confab-client --example group_chat
//! ```

mod support;

use std::time::Duration;

use confab_client::{ChannelId, Client, ClientEvent, Events, HistoryAnchor, Target, UserId};
use support::{Api, Saved};

const NAMES: [&str; 3] = ["ada_group", "bob_group", "cy_group"];

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
    let mut accounts = Vec::new();
    for name in NAMES {
        accounts.push(api.account(name, "correct horse battery").await?);
    }
    let ids: Vec<u64> = accounts.iter().map(|a| a.user_id).collect();
    let group = api
        .create_group(&accounts[0], "Analytical Engine", &ids[1..])
        .await?;
    println!("group {group} with users {ids:?}");

    let mut members: Vec<(Client, Events)> = Vec::new();
    for (name, account) in NAMES.iter().zip(&accounts) {
        members.push(Client::connect(Saved::load(name).config(&url, account))?);
    }
    // Co-members' presence is visible on demand.
    let presence = members[0]
        .0
        .presence_query(ids[1..].iter().map(|id| UserId(*id)).collect())
        .await?;
    for p in presence {
        println!("user {} online: {}", p.user_id, p.online);
    }

    // Everyone says hello, typing first.
    for (i, (client, _)) in members.iter().enumerate() {
        client.typing(ChannelId(group))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ack = client
            .send(
                Target::Channel(ChannelId(group)),
                format!("hello from {}", NAMES[i]),
            )
            .await?;
        println!("{} sent #{}", NAMES[i], ack.seq);
    }

    // Everyone reads the two others' messages and marks them read.
    for (i, (client, events)) in members.iter_mut().enumerate() {
        let mut got = 0;
        while got < 2 {
            match events.recv().await.ok_or("client closed")? {
                ClientEvent::Message(m) if m.channel_id == ChannelId(group) => {
                    println!("{} <- user {}: {:?}", NAMES[i], m.sender_id, m.text);
                    client.read(ChannelId(group), m.seq)?;
                    got += 1;
                }
                ClientEvent::Typing(t) => println!("{} sees user {} typing", NAMES[i], t.user_id),
                ClientEvent::Receipt(r) => {
                    println!("{} sees user {} read up to #{}", NAMES[i], r.user_id, r.seq)
                }
                ClientEvent::Refused { code, message } => {
                    return Err(format!("refused: {code} {message}").into())
                }
                _ => {}
            }
        }
    }

    // The channel's latest page, as a client that just opened it would load it.
    let page = members[2]
        .0
        .history(ChannelId(group), HistoryAnchor::Latest, 50)
        .await?;
    println!(
        "history of group {group} ({} messages):",
        page.messages.len()
    );
    for m in &page.messages {
        println!("  #{} user {}: {}", m.seq, m.sender_id, m.text);
    }

    for (name, (client, mut events)) in NAMES.iter().zip(members) {
        client.close().await;
        // Whatever is left (receipts, cursor steps) is of no use to this
        // example, but the cursor must cover it.
        while events.recv().await.is_some() {}
        Saved {
            cursor: events.cursor().into(),
            next_client_msg_id: client.next_client_msg_id(),
        }
        .store(name);
    }
    Ok(())
}
