//! Carries out the app's [`Effect`]s against the network (HTTP API calls,
//! the SDK client) and turns what comes back into [`Update`]s. It also
//! owns what must outlive a screen: the SDK client, the token refresh, and
//! the state file that lets a restart resume the inbox where it stopped.

use std::time::{Duration, Instant};

use confab_client::{
    ChannelId, Client, ClientConfig, ClientEvent, DeviceId, ErrorCode, Events, HistoryAnchor,
    InboxSeq, Seq, Target, TlsOptions, UserId,
};
use tokio::sync::mpsc;

use crate::api::{Api, Gateway, Tokens};
use crate::app::{Effect, Update};
use crate::error::ChatError;
use crate::options::{Options, TransportChoice};
use crate::state_file::{DeviceState, StateFile};

/// The state file is written at most this often while messages flow (and
/// always when the client stops).
const SAVE_EVERY: Duration = Duration::from_secs(1);

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
                    api.signup(&username, &password).await
                } else {
                    api.login(&username, &password).await
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
                    .unwrap_or_else(|e| Update::Failed(format!("channel list: {e}")))
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
            } => {
                let Some(client) = self.client().cloned() else {
                    return;
                };
                let older = matches!(anchor, HistoryAnchor::Before(_));
                self.spawn_update(async move {
                    match client.history(channel, anchor, limit).await {
                        Ok(batch) => Update::Page { older, batch },
                        Err(e) => Update::PageFailed {
                            channel,
                            error: e.to_string(),
                        },
                    }
                });
            }
            Effect::Send { channel, text } => {
                let Some(link) = self.link.as_mut() else {
                    return;
                };
                // The id this send takes is written down before it leaves:
                // after a crash the next run must not reuse it, or the
                // server would take its message for a retry and store
                // nothing.
                link.state.next_client_msg_id = link.client.next_client_msg_id() + 1;
                if let Err(e) = self.save() {
                    self.spawn_update(async move { Update::SendFailed(e.to_string()) });
                    return;
                }
                let Some(client) = self.client() else {
                    return;
                };
                let sent = client.send(Target::Channel(channel), text.clone());
                self.spawn_update(async move {
                    match sent.await {
                        Ok(ack) => Update::Sent {
                            ack,
                            text: text.into(),
                        },
                        Err(e) => Update::SendFailed(e.to_string()),
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
        link.state.next_client_msg_id = link.client.next_client_msg_id();
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
                        self.schedule_refresh(tokens.expires_in);
                        None
                    }
                    Err(e) => Some(Update::Failed(format!("token refresh: {e}"))),
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
        self.link = Some(Link {
            client,
            events: Some(events),
            file,
            state,
            saved: state,
            last_save: Instant::now(),
            refresh_token: tokens.refresh_token,
            refreshing: false,
            user_id: UserId(tokens.user_id),
        });
        self.schedule_refresh(tokens.expires_in);
        Ok(UserId(tokens.user_id))
    }

    /// Refreshes the access token at three quarters of its life, so that
    /// neither the API calls nor a reconnect ever present an expired one.
    fn schedule_refresh(&self, expires_in: u64) {
        let delay = Duration::from_secs(expires_in.max(4) * 3 / 4);
        self.spawn(async move {
            tokio::time::sleep(delay).await;
            Done::RefreshDue
        });
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
            link.state.next_client_msg_id = link.client.next_client_msg_id();
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
        if names.iter().all(|(id, _)| id.0 != peer) {
            names.push((UserId(peer), api.user(peer).await?.username));
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
