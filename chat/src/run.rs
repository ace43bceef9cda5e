//! The thin loop that owns the terminal: raw mode and the alternate
//! screen (restored on every way out, panics included), key events read on
//! a thread of their own (crossterm's reads block), and a redraw after
//! everything that can change the screen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event;
use tokio::sync::mpsc;

use crate::chat::Chat;
use crate::error::ChatError;
use crate::options::Options;

/// How often the screen is redrawn without input ("last seen", typing
/// notices expiring) and the state file is brought up to date.
const TICK: Duration = Duration::from_millis(500);

/// Restores the terminal when dropped, so that an early return or an
/// error leaves the shell usable. (ratatui's own panic hook covers panics.)
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the client on this terminal until the user quits.
pub fn run(options: Options) -> Result<(), ChatError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(options))
}

async fn run_async(options: Options) -> Result<(), ChatError> {
    let mut chat = Chat::new(options)?;
    let mut terminal = ratatui::try_init()?;
    let _guard = TerminalGuard;
    let (keys_tx, mut keys) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Polling with a timeout lets the thread see `stop` and end
            // before the terminal is restored.
            while !stop.load(Ordering::Relaxed) {
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => match event::read() {
                        Ok(e) => {
                            if keys_tx.send(e).is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    },
                    Ok(false) => {}
                    Err(_) => break,
                }
            }
        })
    };
    let size = terminal.size()?;
    chat.terminal_event(&event::Event::Resize(size.width, size.height));
    let mut tick = tokio::time::interval(TICK);
    let result = loop {
        if let Err(e) = terminal.draw(|frame| crate::draw::draw(frame, chat.app())) {
            break Err(e.into());
        }
        tokio::select! {
            key = keys.recv() => match key {
                Some(e) => chat.terminal_event(&e),
                None => break Ok(()),
            },
            () = chat.step() => {}
            _ = tick.tick() => chat.tick(),
        }
        if chat.should_quit() {
            break Ok(());
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let closed = tokio::time::timeout(Duration::from_secs(3), chat.close()).await;
    result.and(closed.unwrap_or(Ok(())))
}
