//! Carries out the app's [`Effect`]s against the network (HTTP API calls,
//! the SDK client) and turns what comes back into [`Update`]s. It also
//! owns what must outlive a screen: the SDK client, the token refresh, and
//! the state file that lets a restart resume the inbox where it stopped.

use std::time::{Duration, Instant, SystemTime};

use confab_client::{
    ChannelId, Client, ClientConfig, ClientEvent, DeviceId, ErrorCode, Events, HistoryAnchor,
    InboxSeq, Seq, Target, TlsOptions, UserId,
};
use tokio::sync::mpsc;

use crate::api::{Api, Gateway, Tokens};
use crate::error::ChatError;
use crate::options::{Options, TransportChoice};
use crate::state_file::{DeviceState, StateFile};
use crate::update::{Effect, Update};

/// The state file is written at most this often while messages flow (and
/// always when the client stops).
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How many times a failed token refresh is tried again before the
/// session gives up and goes back to the login screen.
const REFRESH_RETRIES: u32 = 3;

/// The `next_client_msg_id` to save before a send leaves: past both what
/// was reserved before and the id the SDK gives this send. The SDK's
/// counter moves only when its task takes the send, so two sends in a row
/// can read the same value: the saved one keeps rising regardless, and a
/// crashed run's successor starts past every id this one may have used.
pub(crate) fn reserve_client_msg_id(saved: u64, sdk_next: u64) -> u64 {
    saved.max(sdk_next) + 1
}

/// What the session's background tasks report.
enum Done {
    Update(Update),
    Authenticated {
        username: String,
        tokens: Tokens,
        gateway: Gateway,
    },
    RefreshDue,
    Refreshed(Result<Tokens, ChatError>),
}

/// The logged-in side: the SDK client and what it resumes from.
struct Link {
    client: Client,
    events: Option<Events>,
    file: StateFile,
    state: DeviceState,
    saved: DeviceState,
    last_save: Instant,
    refresh_token: String,
    refreshing: bool,
    /// When the access token expires, by the wall clock: a machine that
    /// was suspended sees on waking that it is due (a monotonic timer
    /// would not have run while asleep).
    expires_at: SystemTime,
    /// The access token's lifetime, for when a refresh is due.
    lifetime: Duration,
    /// Refreshes failed in a row.
    refresh_failures: u32,
    /// The account, known from the login before the gateway's `Welcome`.
    user_id: UserId,
}

/// Executes effects and reports updates.
pub struct Session {
    options: Options,
    api: Api,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    link: Option<Link>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("options", &self.options)
            .field("logged_in", &self.link.is_some())
            .finish()
    }
}

impl Session {
    /// A session for `options`; nothing is contacted until the app asks.
    pub fn new(options: Options) -> Result<Session, ChatError> {
        let api = Api::new(&options.api)?;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Ok(Session {
            options,
            api,
            done_tx,
            done_rx,
            link: None,
        })
    }

    /// The SDK client, once logged in.
    pub fn client(&self) -> Option<&Client> {
        self.link.as_ref().map(|l| &l.client)
    }

    /// The state the next run resumes from (as last noted, maybe not yet
    /// written).
    pub fn device_state(&self) -> Option<DeviceState> {
        self.link.as_ref().map(|l| l.state)
    }

    fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = Done> + Send + 'static,
    {
        let tx = self.done_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(work.await);
        });
    }

    fn spawn_update<F>(&self, work: F)
    where
        F: std::future::Future<Output = Update> + Send + 'static,
    {
        self.spawn(async move { Done::Update(work.await) });
    }

    /// Starts carrying out `effect`; its outcome comes from [`Session::next`].
    pub fn perform(&mut self, effect: Effect) {
        let api = self.api.clone();
        let page = self.options.page_size;
        match effect {
            Effect::Login {
                username,
                password,
                signup,
            } => self.spawn(async move {
                let tokens = if signup {
                    api.signup(&username, &password.0).await
                } else {
                    api.login(&username, &password.0).await
                };
                let tokens = match tokens {
                    Ok(t) => t,
                    Err(e) => return Done::Update(Update::LoginFailed(e.to_string())),
                };
                api.set_token(&tokens.access_token);
                match api.gateway().await {
                    Ok(gateway) => Done::Authenticated {
                        username,
                        tokens,
                        gateway,
                    },
                    Err(e) => Done::Update(Update::LoginFailed(format!("discovery: {e}"))),
                }
            }),
            Effect::RefreshDirectory => self.spawn_update(async move {
                directory(&api)
                    .await
                    .unwrap_or_else(|e| Update::DirectoryFailed(e.to_string()))
            }),
            Effect::LookupUsers(users) => self.spawn_update(async move {
                let mut names = Vec::new();
                for u in users {
                    if let Ok(user) = api.user(u.0).await {
                        names.push((u, user.username));
                    }
                }
                Update::Names(names)
            }),
            Effect::OpenDmByName(name) => self.spawn_update(async move {
                let found = match api.users_with_prefix(&name, 100).await {
                    Ok(users) => users.into_iter().find(|u| u.username == name),
                    Err(e) => return Update::DmFailed(e.to_string()),
                };
                match found {
                    Some(user) => open_dm(&api, UserId(user.user_id), Some(user.username)).await,
                    None => Update::DmFailed(format!("no user named {name:?}")),
                }
            }),
            Effect::OpenDmWith(user) => {
                self.spawn_update(async move { open_dm(&api, user, None).await })
            }
            Effect::Summarize(channel) => {
                let Some(client) = self.client().cloned() else {
                    return;
                };
                let me = self.link.as_ref().map(|l| l.user_id);
                self.spawn_update(async move {
                    let marks = api.receipts(channel.0).await;
                    let page = client.history(channel, HistoryAnchor::Latest, page).await;
                    match (marks, page) {
                        (Ok(marks), Ok(batch)) => {
                            let read_up_to = marks
                                .iter()
                                .find(|m| Some(UserId(m.user_id)) == me)
                                .map_or(0, |m| m.read_up_to);
                            Update::Summary {
                                channel,
                                read_up_to: Seq(read_up_to),
                                latest: batch.messages,
                                has_more: batch.has_more,
                            }
                        }
                        (Err(e), _) => Update::Failed(format!("read marks: {e}")),
                        (_, Err(e)) => Update::Failed(format!("history: {e}")),
                    }
                });
            }
            Effect::LoadPage {
                channel,
                anchor,
                limit,
                generation,
            } => {
                let Some(client) = self.client().cloned() else {
                    return;
                };
                let older = matches!(anchor, HistoryAnchor::Before(_));
                self.spawn_update(async move {
                    match client.history(channel, anchor, limit).await {
                        Ok(batch) => Update::Page {
                            generation,
                            older,
                            batch,
                        },
                        Err(e) => Update::PageFailed {
                            generation,
                            error: e.to_string(),
                        },
                    }
                });
            }
            Effect::Send { id, channel, text } => {
                let Some(link) = self.link.as_mut() else {
                    let error = "not logged in".to_owned();
                    self.spawn_update(async move { Update::SendFailed { id, error } });
                    return;
                };
                // The id this send takes is written down before it leaves:
                // after a crash the next run must not reuse it, or the
                // server would take its message for a retry and store
                // nothing.
                link.state.next_client_msg_id = reserve_client_msg_id(
                    link.state.next_client_msg_id,
                    link.client.next_client_msg_id(),
                );
                if let Err(e) = self.save() {
                    let error = e.to_string();
                    self.spawn_update(async move { Update::SendFailed { id, error } });
                    return;
                }
                let Some(client) = self.client() else {
                    return;
                };
                let sent = client.send(Target::Channel(channel), text.clone());
                self.spawn_update(async move {
                    match sent.await {
                        Ok(ack) => Update::Sent {
                            id,
                            ack,
                            text: text.into(),
                        },
                        Err(e) => Update::SendFailed {
                            id,
                            error: e.to_string(),
                        },
                    }
                });
            }
            Effect::Typing(channel) => {
                if let Some(client) = self.client() {
                    let _ = client.typing(channel);
                }
            }
            Effect::Read { channel, seq } => {
                if let Some(client) = self.client() {
                    let _ = client.read(channel, seq);
                }
            }
            Effect::Watch(users) => {
                let Some(client) = self.client().cloned() else {
                    return;
                };
                self.spawn_update(async move {
                    match client.presence_subscribe(users).await {
                        Ok(entries) => Update::Presence(entries),
                        Err(e) => Update::Failed(format!("presence: {e}")),
                    }
                });
            }
            Effect::Quit => {}
        }
    }

    /// The next update for the app. Waits for one; cancel-safe, so the
    /// terminal loop can race it against key presses.
    pub async fn next(&mut self) -> Update {
        loop {
            let done = match self.link.as_mut().and_then(|l| l.events.as_mut()) {
                Some(events) => tokio::select! {
                    done = self.done_rx.recv() => done,
                    event = events.recv() => {
                        match event {
                            Some(event) => {
                                if let Some(update) = self.client_event(event) {
                                    return update;
                                }
                            }
                            None => {
                                if let Some(l) = self.link.as_mut() {
                                    l.events = None;
                                }
                            }
                        }
                        continue;
                    }
                },
                None => self.done_rx.recv().await,
            };
            // The session holds a sender, so the channel never closes.
            let Some(done) = done else { continue };
            if let Some(update) = self.done(done) {
                return update;
            }
        }
    }

    fn client_event(&mut self, event: ClientEvent) -> Option<Update> {
        let link = self.link.as_mut()?;
        if let Some(events) = &link.events {
            link.state.inbox_cursor = events.cursor().0;
        }
        // Never lowered: a reservation made for a send the SDK has not
        // taken yet stays.
        link.state.next_client_msg_id = link
            .state
            .next_client_msg_id
            .max(link.client.next_client_msg_id());
        if let ClientEvent::Refused {
            code: ErrorCode::TokenExpired,
            ..
        } = event
        {
            let _ = self.done_tx.send(Done::RefreshDue);
        }
        if link.last_save.elapsed() >= SAVE_EVERY {
            if let Err(e) = self.save() {
                return Some(Update::Failed(e.to_string()));
            }
        }
        Some(Update::Client(event))
    }

    fn done(&mut self, done: Done) -> Option<Update> {
        match done {
            Done::Update(update) => Some(update),
            Done::Authenticated {
                username,
                tokens,
                gateway,
            } => match self.connect(&username, tokens, &gateway) {
                Ok(user_id) => Some(Update::LoggedIn { user_id, username }),
                Err(e) => Some(Update::LoginFailed(e.to_string())),
            },
            Done::RefreshDue => {
                let link = self.link.as_mut()?;
                if !link.refreshing {
                    link.refreshing = true;
                    let (api, token) = (self.api.clone(), link.refresh_token.clone());
                    self.spawn(async move { Done::Refreshed(api.refresh(&token).await) });
                }
                None
            }
            Done::Refreshed(result) => {
                let link = self.link.as_mut()?;
                link.refreshing = false;
                match result {
                    Ok(tokens) => {
                        self.api.set_token(&tokens.access_token);
                        let _ = link.client.set_token(tokens.access_token.clone());
                        link.refresh_token = tokens.refresh_token;
                        link.refresh_failures = 0;
                        (link.expires_at, link.lifetime) = expiry(tokens.expires_in);
                        None
                    }
                    Err(e) if link.refresh_failures < REFRESH_RETRIES => {
                        link.refresh_failures += 1;
                        let delay = Duration::from_secs(1 << link.refresh_failures);
                        self.spawn(async move {
                            tokio::time::sleep(delay).await;
                            Done::RefreshDue
                        });
                        Some(Update::Failed(format!(
                            "token refresh: {e} (trying again in {} s)",
                            delay.as_secs()
                        )))
                    }
                    Err(e) => {
                        self.log_out();
                        Some(Update::LoggedOut(format!(
                            "the session could not be renewed ({e}): log in again"
                        )))
                    }
                }
            }
        }
    }

    /// Logged in: load the device state and start the SDK client.
    fn connect(
        &mut self,
        username: &str,
        tokens: Tokens,
        gateway: &Gateway,
    ) -> Result<UserId, ChatError> {
        let file = StateFile::for_user(&self.options.state_dir, username)?;
        let state = file.load_or_create()?;
        let url = match self.options.transport {
            TransportChoice::Quic => format!("quic://{}", gateway.quic_addr),
            TransportChoice::Ws => gateway.websocket_url.clone(),
            TransportChoice::Wss => gateway.secure_websocket_url.clone(),
        };
        let mut config =
            ClientConfig::new(url, tokens.access_token.clone(), DeviceId(state.device_id));
        config.inbox_cursor = InboxSeq(state.inbox_cursor);
        config.first_client_msg_id = state.next_client_msg_id;
        if let Some(ca) = self.options.ca_file() {
            config.tls = TlsOptions::new().add_root_pem_file(ca);
        }
        let (client, events) = Client::connect(config)?;
        let (expires_at, lifetime) = expiry(tokens.expires_in);
        self.link = Some(Link {
            client,
            events: Some(events),
            file,
            state,
            saved: state,
            last_save: Instant::now(),
            refresh_token: tokens.refresh_token,
            refreshing: false,
            expires_at,
            lifetime,
            refresh_failures: 0,
            user_id: UserId(tokens.user_id),
        });
        Ok(UserId(tokens.user_id))
    }

    /// The clock moved: refreshes the access token once under a quarter
    /// of its life is left, so that neither the API calls nor a reconnect
    /// present an expired one. Read from the wall clock on every tick, so
    /// that a machine waking from suspend refreshes at once.
    pub fn tick(&mut self, now: SystemTime) {
        let Some(link) = &self.link else { return };
        if link.refreshing || link.refresh_failures > 0 {
            return;
        }
        if refresh_due(link.expires_at, link.lifetime, now) {
            let _ = self.done_tx.send(Done::RefreshDue);
        }
    }

    /// Gives up the session: the state is saved and the SDK client closed
    /// in the background.
    fn log_out(&mut self) {
        if let Some(link) = self.link.as_mut() {
            link.state.next_client_msg_id = link
                .state
                .next_client_msg_id
                .max(link.client.next_client_msg_id());
            if let Some(events) = &link.events {
                link.state.inbox_cursor = events.cursor().0;
            }
        }
        let _ = self.save();
        if let Some(link) = self.link.take() {
            tokio::spawn(async move { link.client.close().await });
        }
    }

    /// Writes the state file if it changed and was last written over
    /// [`SAVE_EVERY`] ago (the terminal loop calls this on its ticks).
    pub fn save_if_due(&mut self) -> Result<(), ChatError> {
        match &self.link {
            Some(link) if link.last_save.elapsed() >= SAVE_EVERY => self.save(),
            _ => Ok(()),
        }
    }

    /// Writes the state file if it changed.
    pub fn save(&mut self) -> Result<(), ChatError> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        link.last_save = Instant::now();
        if link.state != link.saved {
            link.file.save(&link.state)?;
            link.saved = link.state;
        }
        Ok(())
    }

    /// Saves the state and closes the SDK client.
    pub async fn close(&mut self) -> Result<(), ChatError> {
        if let Some(link) = self.link.as_mut() {
            link.state.next_client_msg_id = link
                .state
                .next_client_msg_id
                .max(link.client.next_client_msg_id());
            if let Some(events) = &link.events {
                link.state.inbox_cursor = events.cursor().0;
            }
        }
        let saved = self.save();
        if let Some(link) = self.link.take() {
            link.client.close().await;
        }
        saved
    }
}

/// The channel list, the names of the DM peers and friends, and friends.
async fn directory(api: &Api) -> Result<Update, ChatError> {
    let channels = api.channels().await?;
    let friends = api.friends().await?;
    let mut names: Vec<(UserId, String)> = friends
        .friends
        .iter()
        .map(|u| (UserId(u.user_id), u.username.clone()))
        .collect();
    for peer in channels.iter().filter_map(|c| c.peer_id) {
        // A name that cannot be read shows as "user <id>"; the list
        // itself is still good.
        if names.iter().all(|(id, _)| id.0 != peer) {
            if let Ok(user) = api.user(peer).await {
                names.push((UserId(peer), user.username));
            }
        }
    }
    Ok(Update::Directory {
        channels,
        names,
        friends: friends.friends.iter().map(|u| UserId(u.user_id)).collect(),
    })
}

/// The DM with `user`, created if needed.
async fn open_dm(api: &Api, user: UserId, name: Option<String>) -> Update {
    let dm = match api.open_dm(user.0).await {
        Ok(dm) => dm,
        Err(e) => return Update::DmFailed(e.to_string()),
    };
    let peer_name = match name {
        Some(n) => n,
        None => match api.user(user.0).await {
            Ok(u) => u.username,
            Err(e) => return Update::DmFailed(e.to_string()),
        },
    };
    Update::DmOpened {
        channel: ChannelId(dm.channel_id),
        peer: user,
        peer_name,
    }
}

/// When a token that lives `expires_in` seconds from now expires, and its
/// lifetime.
fn expiry(expires_in: u64) -> (SystemTime, Duration) {
    let lifetime = Duration::from_secs(expires_in.max(4));
    (SystemTime::now() + lifetime, lifetime)
}

/// Whether less than a quarter of the token's lifetime is left at `now`
/// (or it has expired, or the clock went back past its issue).
fn refresh_due(expires_at: SystemTime, lifetime: Duration, now: SystemTime) -> bool {
    match expires_at.duration_since(now) {
        Ok(left) => left < lifetime / 4 || left > lifetime,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_before_the_sdk_counter_moves_reserve_distinct_ids() {
        // A fresh state: the SDK gives the first send id 1.
        let first = reserve_client_msg_id(1, 1);
        // The SDK has not taken the first send yet: its counter still
        // reads 1, and the second send must reserve past the first.
        let second = reserve_client_msg_id(first, 1);
        assert!(first >= 2 && second > first, "{first} {second}");
        // The SDK catching up never lowers what was reserved.
        assert_eq!(reserve_client_msg_id(second, 3), second + 1);
        assert_eq!(reserve_client_msg_id(5, 9), 10);
    }

    #[test]
    fn a_refresh_is_due_in_the_last_quarter_and_after_a_suspend() {
        let lifetime = Duration::from_secs(400);
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = issued + lifetime;
        assert!(!refresh_due(expires, lifetime, issued));
        assert!(!refresh_due(
            expires,
            lifetime,
            issued + Duration::from_secs(299)
        ));
        assert!(refresh_due(
            expires,
            lifetime,
            issued + Duration::from_secs(301)
        ));
        // Woken long after expiry.
        assert!(refresh_due(
            expires,
            lifetime,
            issued + Duration::from_secs(9_000)
        ));
    }
}
