//! Renders an [`App`] into a ratatui frame. Nothing here changes state, so
//! the same function draws on the real terminal and on the tests'
//! `TestBackend`.

use confab_client::Message;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::{last_seen, App, ChannelKind, Entry, Focus, LoginField, Screen};

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
            Span::raw(form.username.clone()),
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
        lines.push(Line::raw(format!("  {e}")).fg(Color::Red));
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
        LoginField::Username => (2, 14 + form.username.chars().count()),
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
        Span::raw(format!("· {} · {}", app.my_name, app.connection)),
    ];
    if let Some(n) = &app.notice {
        status.push(Span::raw(format!(" · {n}")).fg(Color::Red));
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
            Span::raw(prompt.input.clone()),
        ])];
        if prompt.busy {
            lines.push(Line::raw("looking up…").fg(Color::Yellow));
        } else if let Some(e) = &prompt.error {
            lines.push(Line::raw(e.clone()).fg(Color::Red));
        }
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" Open a DM with ")),
            popup,
        );
        frame.set_cursor_position(Position::new(
            popup.x + 11 + prompt.input.chars().count() as u16,
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
                spans.push(Span::raw(app.title(c)));
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
                Span::raw(app.name_of(user)),
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
                Span::raw(app.name_of(*peer)).bold(),
                Span::raw(" "),
                dot(app, *peer),
                Span::raw(format!(
                    " {} ",
                    last_seen(app.presence.get(peer), app.now_ms)
                )),
            ]),
            ChannelKind::Group { name, members } => {
                Line::from(format!(" # {name} · {members} members "))
            }
        };
        block = block.title(title);
    }
    let typing = app.typing_in(conv.channel);
    if !typing.is_empty() {
        let verb = if typing.len() == 1 { "is" } else { "are" };
        block = block.title_bottom(
            Line::raw(format!(" {} {verb} typing… ", typing.join(", "))).fg(Color::Yellow),
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
    // From the bottom up: the newest message not scrolled away first.
    let end = conv.messages.len().saturating_sub(conv.scroll);
    let mut lines: Vec<Line> = Vec::new();
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
    let name = app.name_of(m.sender_id);
    let name_style = if mine {
        Style::new().fg(Color::Cyan).bold()
    } else {
        Style::new().fg(Color::Magenta).bold()
    };
    let prefix = time.chars().count() + name.chars().count() + 2;
    let width = width.max(prefix + 8);
    let mut out = Vec::new();
    let mut first = true;
    for para in m.text.split('\n') {
        let chars: Vec<char> = para.chars().collect();
        let mut rest: &[char] = &chars;
        loop {
            let room = width - if first { prefix } else { 2 };
            let take = rest.len().min(room);
            let piece: String = rest[..take].iter().collect();
            rest = &rest[take..];
            if first {
                out.push(Line::from(vec![
                    Span::raw(time.clone()).fg(Color::DarkGray),
                    Span::styled(name.clone(), name_style),
                    Span::raw(": "),
                    Span::raw(piece),
                ]));
                first = false;
            } else {
                out.push(Line::raw(format!("  {piece}")));
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
    let count = app.input.chars().count();
    let shown: String = app
        .input
        .chars()
        .skip(count.saturating_sub(width))
        .collect();
    let shown_len = shown.chars().count() as u16;
    frame.render_widget(Paragraph::new(shown).block(block), area);
    if focused && app.open.is_some() {
        frame.set_cursor_position(Position::new(inner.x + shown_len, inner.y));
    }
}
