//! Renders an [`App`] into a ratatui frame. Nothing here changes state, so
//! the same function draws on the real terminal and on the tests'
//! `TestBackend`.
//!
//! Every string from elsewhere (messages, names, server errors) goes
//! through [`printable`] on its way to the screen: the crossterm backend
//! writes cell contents to the terminal as they are, so an escape sequence
//! in a message would otherwise be obeyed by the user's terminal.

use confab_client::Message;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::app::{last_seen, App, ChannelKind, Entry, Focus, LoginField, Screen};
use crate::conversation::PendingSend;

/// The channel list's width, borders included.
const LIST_WIDTH: u16 = 30;
/// The input box's height, borders included.
const INPUT_HEIGHT: u16 = 3;

/// Where the main screen's parts go.
struct MainLayout {
    status: Rect,
    list: Rect,
    messages: Rect,
    input: Rect,
    help: Rect,
}

fn main_layout(area: Rect) -> MainLayout {
    let [status, body, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    let [list, chat] =
        Layout::horizontal([Constraint::Length(LIST_WIDTH), Constraint::Min(0)]).areas(body);
    let [messages, input] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(INPUT_HEIGHT)]).areas(chat);
    MainLayout {
        status,
        list,
        messages,
        input,
        help,
    }
}

/// How many message lines fit on a terminal of `size` (columns, rows):
/// what a page of scrolling moves, and how close to the oldest loaded
/// message the view must come before an older page is read.
pub fn message_rows(size: (u16, u16)) -> usize {
    let l = main_layout(Rect::new(0, 0, size.0, size.1));
    l.messages.height.saturating_sub(2) as usize
}

/// `text` with every control character (ESC, BEL, CR, the C1 range…)
/// replaced by U+FFFD, and tabs by spaces, so that it shows as text and is
/// never taken by the terminal as a command.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push_str("    "),
            c if c.is_control() => out.push(char::REPLACEMENT_CHARACTER),
            c => out.push(c),
        }
    }
    out
}

/// The longest head of `s` that takes at most `room` columns (at least one
/// character, so that wrapping always advances), and the rest.
fn split_at_width(s: &str, room: usize) -> (&str, &str) {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.width().unwrap_or(0);
        if used > room {
            let i = if i == 0 { c.len_utf8() } else { i };
            return s.split_at(i);
        }
    }
    (s, "")
}

/// The tail of `s` that takes at most `room` columns, and its width.
fn tail_within(s: &str, room: usize) -> (&str, usize) {
    let mut used = 0;
    for (i, c) in s.char_indices().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > room {
            return (&s[i + c.len_utf8()..], used);
        }
        used += w;
    }
    (s, used)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    match app.screen {
        Screen::Login => draw_login(frame, app),
        Screen::Main => draw_main(frame, app),
    }
}

fn draw_login(frame: &mut Frame, app: &App) {
    let form = &app.login;
    let area = frame.area();
    let [_, middle, _, help] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(9),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let [_, boxed, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(56),
        Constraint::Fill(1),
    ])
    .areas(middle);
    let title = if form.signup {
        " confab · sign up "
    } else {
        " confab · log in "
    };
    let marker = |f: LoginField| if form.field == f { "> " } else { "  " };
    let mut lines = vec![
        Line::raw(""),
        Line::from(vec![
            Span::raw(marker(LoginField::Username)),
            Span::raw("Username: ").bold(),
            Span::raw(printable(&form.username)),
        ]),
        Line::from(vec![
            Span::raw(marker(LoginField::Password)),
            Span::raw("Password: ").bold(),
            Span::raw("*".repeat(form.password.chars().count())),
        ]),
        Line::raw(""),
    ];
    if form.busy {
        let doing = if form.signup {
            "signing up…"
        } else {
            "logging in…"
        };
        lines.push(Line::raw(format!("  {doing}")).fg(Color::Yellow));
    } else if let Some(e) = &form.error {
        lines.push(Line::raw(format!("  {}", printable(e))).fg(Color::Red));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title)),
        boxed,
    );
    let other = if form.signup { "log in" } else { "sign up" };
    let hint = if form.signup { "sign up" } else { "log in" };
    help_line(
        frame,
        help,
        &format!("Enter: {hint} · Tab: next field · Ctrl-S: {other} instead · Ctrl-C: quit"),
    );
    let (row, col) = match form.field {
        LoginField::Username => (2, 14 + printable(&form.username).width()),
        LoginField::Password => (3, 14 + form.password.chars().count()),
    };
    frame.set_cursor_position(Position::new(
        boxed.x + col.min(u16::MAX as usize) as u16 - 1,
        boxed.y + row,
    ));
}

fn help_line(frame: &mut Frame, area: Rect, text: &str) {
    frame.render_widget(
        Paragraph::new(Line::raw(text.to_owned()))
            .style(Style::new().fg(Color::Black).bg(Color::Gray)),
        area,
    );
}

fn draw_main(frame: &mut Frame, app: &App) {
    let l = main_layout(frame.area());
    let mut status = vec![
        Span::raw(" confab ").bold(),
        Span::raw(printable(&format!(
            "· {} · {}",
            app.my_name, app.connection
        ))),
    ];
    if let Some(n) = &app.notice {
        status.push(Span::raw(printable(&format!(" · {n}"))).fg(Color::Red));
    }
    frame.render_widget(Paragraph::new(Line::from(status)), l.status);
    draw_list(frame, app, l.list);
    draw_conversation(frame, app, l.messages);
    draw_input(frame, app, l.input);
    help_line(
        frame,
        l.help,
        "Tab/←→: pane · ↑↓: select · Enter: open/send · PgUp/PgDn: scroll · Ctrl-N: new DM · Esc q: quit",
    );
    if let Some(prompt) = &app.dm_prompt {
        let area = frame.area();
        let popup = Rect::new(
            area.x + area.width.saturating_sub(50) / 2,
            area.y + area.height.saturating_sub(5) / 2,
            50.min(area.width),
            5.min(area.height),
        );
        let mut lines = vec![Line::from(vec![
            Span::raw("Username: ").bold(),
            Span::raw(printable(&prompt.input)),
        ])];
        if prompt.busy {
            lines.push(Line::raw("looking up…").fg(Color::Yellow));
        } else if let Some(e) = &prompt.error {
            lines.push(Line::raw(printable(e)).fg(Color::Red));
        }
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" Open a DM with ")),
            popup,
        );
        frame.set_cursor_position(Position::new(
            popup.x + 11 + printable(&prompt.input).width().min(u16::MAX as usize) as u16,
            popup.y + 1,
        ));
    }
}

/// The online dot of a user: filled when online.
fn dot(app: &App, user: confab_client::UserId) -> Span<'static> {
    match app.presence.get(&user) {
        Some(p) if p.online => Span::raw("●").fg(Color::Green),
        _ => Span::raw("○").fg(Color::DarkGray),
    }
}

fn draw_list(frame: &mut Frame, app: &App, area: Rect) {
    let items: Vec<ListItem> = app
        .entries()
        .into_iter()
        .map(|entry| match entry {
            Entry::Channel(id) => {
                let Some(c) = app.channel(id) else {
                    return ListItem::new("");
                };
                let mut spans = match c.kind {
                    ChannelKind::Dm { peer } => vec![dot(app, peer), Span::raw(" ")],
                    ChannelKind::Group { .. } => vec![Span::raw("# ")],
                };
                spans.push(Span::raw(printable(&app.title(c))));
                let unread = c.unread.count();
                if unread > 0 {
                    let more = if c.unread.more() { "+" } else { "" };
                    spans.push(
                        Span::raw(format!(" ({unread}{more})"))
                            .bold()
                            .fg(Color::Yellow),
                    );
                }
                ListItem::new(Line::from(spans))
            }
            Entry::Friend(user) => ListItem::new(Line::from(vec![
                dot(app, user),
                Span::raw(" "),
                Span::raw(printable(&app.name_of(user))),
                Span::raw(" · friend").fg(Color::DarkGray),
            ])),
        })
        .collect();
    let focused = app.focus == Focus::Channels && app.dm_prompt.is_none();
    let block = Block::bordered()
        .title(" Channels ")
        .border_style(border(focused));
    let highlight = if focused {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    };
    let empty = items.is_empty();
    let list = List::new(items).block(block).highlight_style(highlight);
    let mut state = ListState::default().with_selected((!empty).then_some(app.selected));
    frame.render_stateful_widget(list, area, &mut state);
}

fn border(focused: bool) -> Style {
    if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    }
}

fn draw_conversation(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.focus == Focus::Chat && app.dm_prompt.is_none();
    let mut block = Block::bordered().border_style(border(focused));
    let Some(conv) = &app.open else {
        let hint = if app.channels.is_empty() && app.friends.is_empty() {
            "No channels yet. Ctrl-N opens a DM by username."
        } else {
            "Select a channel and press Enter."
        };
        frame.render_widget(Paragraph::new(hint).block(block), area);
        return;
    };
    if let Some(c) = app.channel(conv.channel) {
        let title = match &c.kind {
            ChannelKind::Dm { peer } => Line::from(vec![
                Span::raw(" "),
                Span::raw(printable(&app.name_of(*peer))).bold(),
                Span::raw(" "),
                dot(app, *peer),
                Span::raw(format!(
                    " {} ",
                    last_seen(app.presence.get(peer), app.now_ms)
                )),
            ]),
            ChannelKind::Group { name, members } => {
                Line::from(format!(" # {} · {members} members ", printable(name)))
            }
        };
        block = block.title(title);
    }
    let typing = app.typing_in(conv.channel);
    if !typing.is_empty() {
        let verb = if typing.len() == 1 { "is" } else { "are" };
        block = block.title_bottom(
            Line::raw(format!(
                " {} {verb} typing… ",
                printable(&typing.join(", "))
            ))
            .fg(Color::Yellow),
        );
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = inner.height as usize;
    let width = inner.width as usize;
    if !conv.loaded {
        frame.render_widget(Paragraph::new("loading…"), inner);
        return;
    }
    // From the bottom up: the sends not yet acknowledged under the newest
    // message (when the view is at the bottom), then the newest message not
    // scrolled away.
    let end = conv.messages.len().saturating_sub(conv.scroll);
    let mut lines: Vec<Line> = Vec::new();
    if conv.scroll == 0 {
        for p in app.pending.iter().filter(|p| p.channel == conv.channel) {
            lines.extend(pending_lines(app, p, width));
        }
    }
    let mut top = end;
    while top > 0 && lines.len() < rows {
        top -= 1;
        let mut these = message_lines(app, &conv.messages[top], width);
        these.append(&mut lines);
        lines = these;
    }
    if top == 0 && lines.len() < rows {
        let edge = if conv.loading_older {
            "loading older messages…"
        } else if conv.has_older {
            "PgUp: older messages"
        } else {
            "start of the conversation"
        };
        lines.insert(0, Line::raw(format!("— {edge} —")).fg(Color::DarkGray));
    }
    let skip = lines.len().saturating_sub(rows);
    frame.render_widget(Paragraph::new(lines.split_off(skip)), inner);
}

/// A message as lines of at most `width` columns: "12:34 bob: text",
/// wrapped under itself.
fn message_lines(app: &App, m: &Message, width: usize) -> Vec<Line<'static>> {
    let secs = m.timestamp_ms / 1000;
    let time = format!("{:02}:{:02} ", secs / 3600 % 24, secs / 60 % 60);
    let mine = Some(m.sender_id) == app.me;
    let name_style = if mine {
        Style::new().fg(Color::Cyan).bold()
    } else {
        Style::new().fg(Color::Magenta).bold()
    };
    let head = vec![
        Span::raw(time).fg(Color::DarkGray),
        Span::styled(printable(&app.name_of(m.sender_id)), name_style),
        Span::raw(": "),
    ];
    wrapped(head, &m.text, width, Style::new())
}

/// A send not acknowledged yet: "sending… alice: text", dimmed.
fn pending_lines(app: &App, p: &PendingSend, width: usize) -> Vec<Line<'static>> {
    let dim = Style::new().fg(Color::DarkGray);
    let name = app.me.map(|me| app.name_of(me)).unwrap_or_default();
    let head = vec![Span::styled(
        format!("sending… {}: ", printable(&name)),
        dim,
    )];
    wrapped(head, &p.text, width, dim)
}

/// `text` after `head` in lines of at most `width` display columns (wide
/// characters take two), continuation lines indented by two.
fn wrapped(head: Vec<Span<'static>>, text: &str, width: usize, style: Style) -> Vec<Line<'static>> {
    let prefix: usize = head.iter().map(Span::width).sum();
    let width = width.max(prefix + 8);
    let mut head = Some(head);
    let mut out = Vec::new();
    for para in text.split('\n') {
        let para = printable(para);
        let mut rest = para.as_str();
        loop {
            let room = width - if head.is_some() { prefix } else { 2 };
            let (piece, tail) = split_at_width(rest, room);
            rest = tail;
            match head.take() {
                Some(mut spans) => {
                    spans.push(Span::styled(piece.to_owned(), style));
                    out.push(Line::from(spans));
                }
                None => out.push(Line::styled(format!("  {piece}"), style)),
            }
            if rest.is_empty() {
                break;
            }
        }
    }
    out
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.focus == Focus::Chat && app.dm_prompt.is_none();
    let block = Block::bordered()
        .title(" Message ")
        .border_style(border(focused));
    let inner = block.inner(area);
    // The end of a long input stays in view.
    let width = inner.width.saturating_sub(1) as usize;
    let input = printable(&app.input);
    let (shown, shown_width) = tail_within(&input, width);
    frame.render_widget(Paragraph::new(shown.to_owned()).block(block), area);
    if focused && app.open.is_some() {
        frame.set_cursor_position(Position::new(
            inner.x + shown_width.min(u16::MAX as usize) as u16,
            inner.y,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_client::{ChannelId, DeviceId, InboxSeq, Seq, Text, UserId};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use crate::api::ChannelInfo;
    use crate::update::Update;

    fn message(text: &str) -> Message {
        Message {
            inbox_seq: InboxSeq(1),
            channel_id: ChannelId(1),
            seq: Seq(1),
            sender_id: UserId(2),
            sender_device: DeviceId(1),
            client_msg_id: 1,
            timestamp_ms: 0,
            text: Text::from(text),
        }
    }

    /// Alice logged in, with bob's DM (whose name is `bob`) open and
    /// loaded with `messages`.
    fn app_with(bob: &str, messages: Vec<Message>) -> App {
        let mut app = App::new(Some("alice".into()), false, 50);
        app.apply(Update::LoggedIn {
            user_id: UserId(1),
            username: "alice".into(),
        });
        app.apply(Update::Directory {
            channels: vec![ChannelInfo {
                channel_id: 1,
                kind: "dm".into(),
                peer_id: Some(2),
                name: None,
                member_count: 2,
            }],
            names: vec![(UserId(2), bob.into())],
            friends: vec![],
        });
        let effects = app.open(ChannelId(1));
        let generation = match effects.as_slice() {
            [crate::Effect::LoadPage { generation, .. }] => *generation,
            other => panic!("{other:?}"),
        };
        app.apply(Update::Page {
            generation,
            older: false,
            batch: confab_client::HistoryBatch {
                request_id: 0,
                channel_id: ChannelId(1),
                messages,
                has_more: false,
            },
        });
        app
    }

    fn screen(app: &App, width: u16) -> String {
        let mut term = Terminal::new(TestBackend::new(width, 20)).unwrap();
        term.draw(|f| draw(f, app)).unwrap();
        let buf = term.backend().buffer();
        let mut text = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                text.push_str(buf[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let evil = "red \x1b[31mtext\x1b]52;c;AAAA\x07 tab\there\r\u{9b}2J";
        let mut app = app_with("bob\x1b[2J", vec![message(evil)]);
        app.notice = Some("server: \x1b]0;title\x07".into());
        app.connection = "refused: \x1b[5m".into();
        let shown = screen(&app, 100);
        for bad in ['\x1b', '\x07', '\r', '\t', '\u{9b}'] {
            assert!(!shown.contains(bad), "{bad:?} on screen:\n{shown}");
        }
        assert!(shown.contains("red \u{fffd}[31mtext"), "{shown}");
        assert!(shown.contains("tab    here"), "{shown}");
        assert_eq!(printable("a\u{85}b"), "a\u{fffd}b");
    }

    #[test]
    fn wide_characters_wrap_by_their_columns() {
        // 30 CJK characters: 60 columns.
        let cjk: String = std::iter::repeat_n('漢', 30).collect();
        let app = app_with("bob", vec![message(&cjk)]);
        let lines = message_lines(&app, &app.open.as_ref().unwrap().messages[0], 40);
        assert!(lines.len() >= 2, "{lines:?}");
        for line in &lines {
            assert!(line.width() <= 40, "{} columns: {line:?}", line.width());
        }
        let total: usize = lines
            .iter()
            .flat_map(|l| l.spans.iter())
            .map(|s| s.content.chars().filter(|&c| c == '漢').count())
            .sum();
        assert_eq!(total, 30);
        assert_eq!(split_at_width("漢字ab", 3), ("漢", "字ab"));
        assert_eq!(tail_within("ab漢字", 5), ("b漢字", 5));
    }

    #[test]
    fn sends_not_yet_acknowledged_show_as_sending() {
        let mut app = app_with("bob", vec![message("hello alice")]);
        app.focus = Focus::Chat;
        app.input = "hi bob".into();
        let effects = app.on_terminal(&ratatui::crossterm::event::Event::Key(
            ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Enter),
        ));
        assert!(matches!(effects.as_slice(), [crate::Effect::Send { .. }]));
        let shown = screen(&app, 100);
        assert!(shown.contains("sending… alice: hi bob"), "{shown}");
    }
}
