//! `sotto group ...`: groups with an admin (GRP-1..12).
//!
//! The creator is the admin and holds the group master key; every membership change starts a new
//! epoch whose key goes to the remaining members over their pairwise sessions (GRP-6), so a
//! removed member cannot read what follows. A member leaves by telling the admin, who removes it
//! (GRP-11); the admin hands its role to a member, who issues the next epoch (GRP-12). Each command commits the change with its envelopes,
//! then syncs once so they leave at once (or with the next sync if the broker is unreachable).

use std::path::Path;
use std::time::Duration;

use sotto_client::Client;

use crate::cli::{GroupCreateArgs, GroupLeaveArgs, GroupMemberArgs, GroupSendArgs};
use crate::errors;
use crate::format;
use crate::messaging::{require_contact, sync_and_report};
use crate::person::{Device, open};

/// How long a group command tries to publish its envelopes.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Quiet period of those syncs.
const QUIET: Duration = Duration::from_millis(500);

async fn publish(client: &mut Client, store: &Path) -> anyhow::Result<()> {
    let report = sync_and_report(client, store, TIMEOUT, QUIET).await?;
    if !report.complete {
        eprintln!("note: not everything went out yet; it leaves with the next sync");
    }
    Ok(())
}

/// `sotto group create`.
pub async fn create(device: &Device, args: GroupCreateArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let mut members = Vec::new();
    for m in &args.members {
        let user = format::user(&client, m)?;
        require_contact(&client, &user)?;
        if !members.contains(&user) {
            members.push(user);
        }
    }
    let group = client
        .create_group(&members)
        .map_err(|e| errors::client(e, store))?;
    println!(
        "group {:?} created: id {group} (you are the admin; {} member(s) besides you)",
        args.name,
        members.len()
    );
    println!(
        "send with: sotto group send {} <text>",
        format::short_group(&group)
    );
    publish(&mut client, store).await?;
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto group add`.
pub async fn add(device: &Device, args: GroupMemberArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let group = format::group(&client, &args.group)?;
    let user = format::user(&client, &args.user)?;
    require_contact(&client, &user)?;
    client
        .add_to_group(&group, &user)
        .map_err(|e| errors::client(e, store))?;
    println!(
        "{user} added to group {}: new epoch, new key for everyone",
        format::short_group(&group)
    );
    publish(&mut client, store).await?;
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto group remove`.
pub async fn remove(device: &Device, args: GroupMemberArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let group = format::group(&client, &args.group)?;
    let user = format::user(&client, &args.user)?;
    client
        .remove_from_group(&group, &user)
        .map_err(|e| errors::client(e, store))?;
    println!(
        "{user} removed from group {}: the others get a new key, {user} does not",
        format::short_group(&group)
    );
    publish(&mut client, store).await?;
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto group leave`.
pub async fn leave(device: &Device, args: GroupLeaveArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let group = format::group(&client, &args.group)?;
    client
        .leave_group(&group)
        .map_err(|e| errors::client(e, store))?;
    println!(
        "you left group {}: your keys for it are deleted; the admin removes you with a new key          you never get",
        format::short_group(&group)
    );
    publish(&mut client, store).await?;
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto group handover`.
pub async fn handover(device: &Device, args: GroupMemberArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let group = format::group(&client, &args.group)?;
    let user = format::user(&client, &args.user)?;
    client
        .hand_over_group(&group, &user)
        .map_err(|e| errors::client(e, store))?;
    println!(
        "group {}: the admin role goes to {user}, who issues the next epoch; you change no          members from now on (once their key arrives you may leave)",
        format::short_group(&group)
    );
    publish(&mut client, store).await?;
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto group send`.
pub async fn send(device: &Device, args: GroupSendArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let group = format::group(&client, &args.group)?;
    let text = args.text.join(" ");
    client
        .send_group(&group, &text)
        .map_err(|e| errors::client(e, store))?;
    publish(&mut client, store).await?;
    println!("sent to group {}", format::short_group(&group));
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto group list`.
pub async fn list(device: &Device) -> anyhow::Result<()> {
    let client = open(device).await?;
    let groups = client.groups();
    if groups.is_empty() {
        println!("no groups: `sotto group create <name> <user id>...`");
    }
    let me = client.user_id();
    for group in groups {
        println!("{}  epoch {}", group.id, group.epoch);
        for m in &group.members {
            let role = if *m == group.admin { "admin" } else { "member" };
            let you = if *m == me { " (you)" } else { "" };
            println!("  {m}  {role}{you}");
        }
    }
    Ok(())
}
