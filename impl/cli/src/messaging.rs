//! `send`, `inbox` and `chat`: the commands that talk to the message service; `history` and
//! `delete`, which read and change the conversations in the store (and `delete --account`,
//! which deletes the account at the service and the store with it).
//!
//! A received message is *new* until it was shown: `inbox` shows every new one (also those a
//! `chat` or `send` did not show) and marks them read, `history` marks its conversation read.
//!
//! `send` and `inbox` are one [`Client::sync`] each: connect, drain the inbox (committing before
//! acknowledging, RX-4), publish the outbox and wait for its PUBACKs (RX-6), disconnect. A message
//! that cannot go out stays in the store's outbox and leaves with the next sync. `chat` keeps a
//! session open ([`Client::connect`]) and feeds it the lines typed on stdin.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use sotto_client::{
    ApiCode, Chat, Client, ClientError, ClientEvent, Direction, MessageId, MessageState,
    StoredMessage, SyncReport, UserId,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{ChatArgs, DeleteArgs, HistoryArgs, InboxArgs, SendArgs};
use crate::errors::{self, hinted};
use crate::format;
use crate::person::{Device, open};

/// Quiet period of `send`: only long enough to pick up what is already queued.
const SEND_QUIET: Duration = Duration::from_millis(500);

/// Marks read the conversations of the messages a report showed.
fn mark_shown(client: &mut Client, report: &SyncReport) {
    let chats: std::collections::BTreeSet<Chat> = report
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => Some(m.group.map_or(Chat::User(m.from), Chat::Group)),
            _ => None,
        })
        .collect();
    for chat in chats {
        if let Err(e) = client.mark_read(&chat) {
            tracing::warn!(error = %e, "could not mark a conversation read");
        }
    }
}

/// A conversation named on the command line: a contact (user id, prefix or name) or a group.
fn conversation(client: &Client, text: &str) -> anyhow::Result<Chat> {
    match format::user(client, text) {
        Ok(user) => Ok(Chat::User(user)),
        Err(not_user) => format::group(client, text)
            .map(Chat::Group)
            .map_err(|_| not_user.context("nor is it a group id (see `sotto group list`)")),
    }
}

/// The sent messages the service refused for good (a recipient deleted their account).
fn undeliverable(client: &Client) -> BTreeSet<MessageId> {
    client
        .held_outbox()
        .map(|held| {
            held.iter()
                .filter(|h| h.is_undeliverable())
                .map(|h| h.id)
                .collect()
        })
        .unwrap_or_default()
}

/// One stored message as `history` and `inbox` show it (`undeliverable`: see [`undeliverable`]).
fn stored_line(client: &Client, m: &StoredMessage, undeliverable: &BTreeSet<MessageId>) -> String {
    let who = match (m.direction, m.sender) {
        (Direction::Out, _) => "you".to_owned(),
        (Direction::In, Some(sender)) => format::who(client, &sender),
        (Direction::In, None) => "?".to_owned(),
    };
    let place = match m.chat {
        Chat::Group(g) => format!(" in group {}", format::short_group(&g)),
        Chat::User(_) => String::new(),
    };
    let mark = match m.state {
        MessageState::Queued | MessageState::Sent
            if m.direction == Direction::Out && undeliverable.contains(&m.id) =>
        {
            "  (UNDELIVERABLE: the recipient deleted their account)"
        }
        MessageState::Received => "  NEW",
        MessageState::Queued => "  (queued)",
        MessageState::Sent => "  (sent)",
        MessageState::Delivered => "  (delivered)",
        _ => "",
    };
    format!(
        "#{} [{}] {who}{place}: {}{mark}",
        m.row_id,
        format::time(m.sent_at),
        m.text
    )
}

/// Prints what a sync brought; returns how many messages.
pub fn show_report(report: &SyncReport) -> usize {
    let mut messages = 0;
    for e in &report.events {
        if matches!(e, ClientEvent::Message(_)) {
            messages += 1;
        }
        match (e, format::event(e)) {
            // Refusals change nothing (a late epoch ack from a removed member, a tampered
            // envelope): a note on stderr, not part of the conversation.
            (ClientEvent::Refused(_) | ClientEvent::ContentRejected(_), Some(line)) => {
                eprintln!("note:{line}");
            }
            (_, Some(line)) => println!("{line}"),
            (_, None) => {}
        }
    }
    messages
}

/// Requires `user` to be a contact, with the next step if not.
pub fn require_contact(client: &Client, user: &UserId) -> anyhow::Result<()> {
    if client.trust(user).is_none() {
        return Err(hinted(
            format!("{user} is not a contact"),
            format!(
                "add them first: `sotto add <their card URI>` (verified) or `sotto add {user}` \
                 (from the directory)"
            ),
        ));
    }
    Ok(())
}

/// Syncs and reports whether the outbox is empty afterwards.
pub async fn sync_and_report(
    client: &mut Client,
    store: &Path,
    timeout: Duration,
    quiet: Duration,
) -> anyhow::Result<SyncReport> {
    let report = client
        .sync_with(timeout, quiet)
        .await
        .map_err(|e| errors::client(e, store))?;
    show_report(&report);
    Ok(report)
}

/// `sotto send`.
pub async fn send(device: &Device, args: SendArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let to = format::user(&client, &args.to)?;
    require_contact(&client, &to)?;
    let text = args.text.join(" ");
    let id = client
        .send(&to, &text)
        .map_err(|e| errors::client(e, store))?;
    let result = client.sync_with(args.timeout, SEND_QUIET).await;
    let state = client
        .outgoing_state(&id)
        .map_err(|e| errors::client(e, store))?;
    match result {
        Ok(report) => {
            show_report(&report);
            mark_shown(&mut client, &report);
        }
        Err(e) => {
            client.close().map_err(|e| errors::client(e, store))?;
            return Err(errors::client(e, store).context(
                "the message is saved in the outbox and goes out with the next \
                 `sotto send`, `sotto inbox` or `sotto chat`",
            ));
        }
    }
    let refused_for_good = undeliverable(&client).contains(&id);
    match state {
        Some(MessageState::Queued | MessageState::Sent) if refused_for_good => {
            println!(
                "NOT delivered to {to}: they deleted their account; the message is not sent again"
            );
        }
        Some(MessageState::Queued) | None => {
            println!(
                "queued for {to}: the broker did not confirm it yet; it goes out with the next sync"
            );
        }
        Some(MessageState::Delivered) => println!("sent to {to} and delivered"),
        Some(_) => println!("sent to {to} (the server holds it until they connect)"),
    }
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto inbox`: every new message (also those that arrived before and were not shown), what
/// else the sync brought, and every new message marked read.
pub async fn inbox(device: &Device, args: InboxArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let report = client
        .sync_with(args.timeout, args.quiet)
        .await
        .map_err(|e| errors::client(e, store))?;
    for e in &report.events {
        match (e, format::event(e)) {
            (ClientEvent::Message(_), _) | (_, None) => {}
            (ClientEvent::Refused(_) | ClientEvent::ContentRejected(_), Some(line)) => {
                eprintln!("note:{line}");
            }
            (_, Some(line)) => println!("{line}"),
        }
    }
    let unread = client.unread().map_err(|e| errors::client(e, store))?;
    for m in &unread {
        println!("{}", stored_line(&client, m, &BTreeSet::new()));
    }
    let chats: std::collections::BTreeSet<Chat> = unread.iter().map(|m| m.chat).collect();
    for chat in &chats {
        client
            .mark_read(chat)
            .map_err(|e| errors::client(e, store))?;
    }
    match unread.len() {
        0 => println!("no new messages"),
        n => println!("{n} new message(s)"),
    }
    if !report.complete {
        eprintln!(
            "note: the inbox may hold more (stopped after {:?})",
            args.timeout
        );
    }
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto history`.
pub async fn history(device: &Device, args: HistoryArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let chat = conversation(&client, &args.with)?;
    let messages = client
        .messages(&chat)
        .map_err(|e| errors::client(e, store))?;
    let title = match chat {
        Chat::User(u) => {
            let trust = client.trust(&u).map(format::trust).unwrap_or("?");
            format!("conversation with {} ({trust})", format::who(&client, &u))
        }
        Chat::Group(g) => format!("group {}", format::short_group(&g)),
    };
    println!("{title}: {} message(s)", messages.len());
    let skip = match args.last {
        0 => 0,
        n => messages.len().saturating_sub(n),
    };
    let gone = undeliverable(&client);
    for m in messages.iter().skip(skip) {
        println!("{}", stored_line(&client, m, &gone));
    }
    client
        .mark_read(&chat)
        .map_err(|e| errors::client(e, store))?;
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto delete --account`: asks for a confirmation (unless `yes`), then deletes the account
/// at the service and this device's store.
async fn delete_account(device: &Device, yes: bool) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let client = open(device).await?;
    let user = client.user_id();
    if !yes {
        let confirmed = std::io::stdin().is_terminal() && {
            eprint!(
                "This deletes the account {user} at {} (your keys, certificate and queued \
                 messages; messages to you are refused from then on) and this device's store {}. \
                 It cannot be undone.\nType `delete` to confirm: ",
                client.server_url(),
                store.display()
            );
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim() == "delete"
        };
        if !confirmed {
            client.close().map_err(|e| errors::client(e, store))?;
            return Err(hinted(
                "the account was not deleted: not confirmed",
                "run it in a terminal and type `delete`, or pass --yes",
            ));
        }
    }
    client.delete_account().await.map_err(|e| match e {
        ClientError::Refused {
            code: ApiCode::ClientCertificateRequired,
            ..
        } => hinted(
            "the service no longer accepts this device's certificate",
            format!(
                "the account may be deleted already; the store {} is kept: remove it by hand \
                 if so",
                store.display()
            ),
        ),
        other => errors::client(other, store).context("the account was not deleted"),
    })?;
    println!(
        "account {user} deleted: the service forgot your keys, certificate and queued messages \
         (messages to you are refused from now on), and the store {} is gone",
        store.display()
    );
    Ok(())
}

/// `sotto delete`.
pub async fn delete(device: &Device, args: DeleteArgs) -> anyhow::Result<()> {
    if args.account {
        return delete_account(device, args.yes).await;
    }
    if args.yes {
        return Err(hinted(
            "--yes confirms only the deletion of the account",
            "use `sotto delete --account --yes`, or leave --yes out",
        ));
    }
    let store = device.store.as_path();
    let mut client = open(device).await?;
    match (args.message, &args.conversation) {
        (None, None) if args.contact.is_some() => {
            let text = args.contact.as_deref().unwrap_or_default();
            let user = format::user(&client, text)?;
            client
                .delete_contact(&user)
                .map_err(|e| errors::client(e, store))?;
            println!(
                "{user} deleted from this device: keys, sessions, name and conversation \
                 (a new first message from them makes a new, unverified contact)"
            );
        }
        (Some(n), _) => {
            let gone = client
                .delete_message(n)
                .map_err(|e| errors::client(e, store))?;
            if !gone {
                return Err(hinted(
                    format!("there is no message #{n} in this store"),
                    "`sotto history <contact or group>` shows the numbers",
                ));
            }
            println!("message #{n} deleted from this device");
        }
        (None, Some(who)) => {
            let chat = conversation(&client, who)?;
            let n = client
                .delete_conversation(&chat)
                .map_err(|e| errors::client(e, store))?;
            println!("{n} message(s) deleted from this device; the contact or group stays");
        }
        (None, None) => unreachable!("clap requires --message, --conversation or --contact"),
    }
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto chat`.
pub async fn chat(device: &Device, args: ChatArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let client = open(device).await?;
    let with = format::user(&client, &args.with)?;
    require_contact(&client, &with)?;
    let history = client
        .messages(&Chat::User(with))
        .map_err(|e| errors::client(e, store))?;
    let skip = history.len().saturating_sub(args.history);
    for m in history.iter().skip(skip) {
        let who = match m.direction {
            Direction::In => with.to_string(),
            Direction::Out => "you".to_owned(),
        };
        println!("[{}] {who}: {}", format::time(m.sent_at), m.text);
    }
    let trust = client.trust(&with).map(format::trust).unwrap_or("?");
    println!("chatting with {with} ({trust}); type a line and Enter to send, Ctrl-D to leave");

    let (session, mut events) = client.connect();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut last_sent = None;
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    let text = line.trim_end().to_owned();
                    if text.is_empty() {
                        continue;
                    }
                    match session.send(with, text).await {
                        Ok(id) => last_sent = Some(id),
                        Err(e) => eprintln!("error: {}", errors::render(&errors::client(e, store))),
                    }
                }
                Ok(None) | Err(_) => break,
            },
            ev = events.recv() => match ev {
                Some(ClientEvent::Connected { .. }) => eprintln!("  (connected)"),
                Some(ClientEvent::Disconnected { reason, .. }) => {
                    eprintln!("  (disconnected: {reason}; reconnecting)");
                }
                Some(e) => {
                    if let Some(line) = format::event(&e) {
                        println!("{line}");
                    }
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Give the last line a moment to reach the broker before the session closes.
    if let Some(id) = last_sent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            let state = session.call(move |c| c.outgoing_state(&id)).await;
            if !matches!(state, Ok(Ok(Some(MessageState::Queued)))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut client = session
        .shutdown()
        .await
        .map_err(|e| errors::client(e, store))?;
    // What the chat showed is read.
    if let Err(e) = client.mark_read(&Chat::User(with)) {
        tracing::warn!(error = %e, "could not mark the conversation read");
    }
    let waiting = client.outbox_len().unwrap_or(0);
    if waiting > 0 {
        eprintln!(
            "{waiting} envelope(s) in the outbox await their receipt; they are resent if needed"
        );
    }
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}
