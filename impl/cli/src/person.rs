//! The account commands: `signup`, `card`, `add`, `verify`, `contacts`, `whoami`.
//!
//! Trust follows CARD-4: a card scanned in person makes a *verified* contact; a user id looked up
//! in the directory makes an *unverified* one until the safety numbers were compared (SAFE-1).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use sotto_client::pin::{Fingerprint, fetch_ca};
use sotto_client::{Client, Config, HeldIdentityClaim, Resolve, UserId};

use crate::cli::{AddArgs, CardArgs, ContactArgs, NameArgs, SignupArgs, VerifyArgs};
use crate::errors::{self, hinted};
use crate::{format, passphrase, qr};

/// A person's device as the command line reaches it: the store, and the host names to reach at
/// a given address (`--resolve`, not kept in the store).
#[derive(Debug)]
pub struct Device {
    /// The encrypted store.
    pub store: PathBuf,
    /// Name overrides for every connection.
    pub resolve: Resolve,
}

impl Device {
    fn config(&self) -> Config {
        Config {
            resolve: self.resolve.clone(),
            ..Config::default()
        }
    }
}

/// Opens the account of `device` (passphrase from the environment or the prompt).
pub async fn open(device: &Device) -> anyhow::Result<Client> {
    let store = device.store.as_path();
    if !store.exists() {
        return Err(hinted(
            format!("no store at {}", store.display()),
            "run `sotto signup --server URL --ca CA.pem` first, or point --store / SOTTO_STORE \
             at your store",
        ));
    }
    let pass = passphrase::for_open()?;
    Client::open_with(store, &pass, device.config())
        .await
        .map_err(|e| errors::client(e, store))
}

/// `sotto signup`.
pub async fn signup(device: &Device, args: SignupArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    if store.exists() {
        return Err(hinted(
            format!("a store already exists at {}", store.display()),
            "this device has an account already (`sotto whoami`); use --store for another one",
        ));
    }
    let ca_pem = match (&args.ca, &args.ca_fingerprint) {
        (Some(path), _) => std::fs::read_to_string(path).map_err(|e| {
            hinted(
                format!("cannot read the CA file {}: {e}", path.display()),
                "the operator's `sotto serve` printed the CA file path (DIR/ca.pem)",
            )
        })?,
        (None, Some(fp)) => {
            let fingerprint = Fingerprint::parse(fp).map_err(|_| {
                hinted(
                    format!("{fp:?} is not a SHA-256 fingerprint"),
                    "give the 64 hex digits `sotto serve` printed after `CA SHA-256`",
                )
            })?;
            fetch_ca(&args.server, &fingerprint, &device.resolve)
                .await
                .map_err(|e| errors::fetch_ca(e, &args.server))?
        }
        (None, None) => {
            return Err(hinted(
                "no CA given",
                "pass --ca CA.pem or --ca-fingerprint HEX",
            ));
        }
    };
    let pass = passphrase::for_create()?;
    let config = Config {
        signup_one_time_prekeys: args.one_time_prekeys,
        ..device.config()
    };
    eprintln!("signing up with {} ...", args.server);
    let client = Client::signup_with(&args.server, &ca_pem, store, &pass, config)
        .await
        .map_err(|e| errors::client(e, store))?;
    println!("signed up: your user id is {}", client.user_id());
    println!(
        "store:     {} (encrypted with your passphrase)",
        store.display()
    );
    println!("broker:    {}", client.broker_address());
    println!("next: `sotto card` shows your card for others to scan");
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto card`.
pub async fn card(device: &Device, args: CardArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let client = open(device).await?;
    let uri = client.card().map_err(|e| errors::client(e, store))?;
    if !args.no_qr {
        match qr::render(&uri) {
            Ok(code) => println!("{code}"),
            Err(e) => tracing::warn!(error = %e, "no QR code"),
        }
    }
    println!("{uri}");
    eprintln!(
        "user id {}: the other person runs `sotto add '<this URI>'` (or scans the code)",
        client.user_id()
    );
    Ok(())
}

/// `sotto add`.
pub async fn add(device: &Device, args: AddArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let who = args.who.trim();
    if who.starts_with("sotto:") {
        let user = client.add_card(who).map_err(|e| errors::client(e, store))?;
        println!("added {user} from their card (verified)");
    } else {
        let user = UserId::parse(who).map_err(|_| {
            hinted(
                format!("{who:?} is neither a card nor a user id"),
                "a card starts with `sotto:`; a user id is 16 characters a-z and 2-7",
            )
        })?;
        if client.trust(&user).is_some() {
            println!("{user} is already a contact ({})", trust_of(&client, &user));
            return Ok(());
        }
        client
            .add_from_directory(&user)
            .await
            .map_err(|e| errors::client(e, store))?;
        println!("added {user} from the directory (UNVERIFIED)");
        eprintln!(
            "warning: the server could have given you someone else's keys. Compare safety \
             numbers in person or on a call: `sotto verify {user}`"
        );
    }
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

fn trust_of(client: &Client, user: &UserId) -> &'static str {
    client
        .trust(user)
        .map(format::trust)
        .unwrap_or("not a contact")
}

/// `sotto verify`.
pub async fn verify(device: &Device, args: VerifyArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let user = format::user(&client, &args.user)?;
    let number = client
        .safety_number(&user)
        .map_err(|e| errors::client(e, store))?;
    println!("safety number with {user}:\n\n  {number}\n");
    println!("currently: {}", trust_of(&client, &user));
    if !args.yes {
        print!("Does {user} see the same number? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            println!("not marked verified");
            return Ok(());
        }
    }
    client.verify(&user).map_err(|e| errors::client(e, store))?;
    println!("{user} is now verified");
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto contacts`.
pub async fn contacts(device: &Device) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let client = open(device).await?;
    let contacts = client.contacts().map_err(|e| errors::client(e, store))?;
    if contacts.is_empty() {
        println!("no contacts yet: `sotto add <card URI or user id>`");
    }
    let blocked = client.blocked();
    for c in &contacts {
        println!(
            "{}  {:<10}  added {}{}{}",
            c.user,
            format::trust(c.trust),
            format::time(c.added_at),
            c.name
                .as_ref()
                .map(|n| format!("  {n}"))
                .unwrap_or_default(),
            if blocked.contains(&c.user) {
                "  BLOCKED"
            } else {
                ""
            }
        );
    }
    for u in blocked
        .iter()
        .filter(|u| !contacts.iter().any(|c| c.user == **u))
    {
        println!("{u}  (not a contact)  BLOCKED");
    }
    Ok(())
}

/// `sotto name`.
pub async fn name(device: &Device, args: NameArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let user = format::user(&client, &args.contact)?;
    let name = if args.clear {
        None
    } else {
        args.name.as_deref()
    };
    client
        .set_contact_name(&user, name)
        .map_err(|e| errors::client(e, store))?;
    match name {
        Some(n) => println!("{user} is now {n:?}"),
        None => println!("{user} has no name now"),
    }
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto identity`.
pub async fn identity(device: &Device, args: ContactArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let user = format::user(&client, &args.contact)?;
    let who = format::who(&client, &user);
    let claims = claims_for(&client, &user, store)?;
    for c in &claims {
        println!(
            "{} first message(s) from {who} claim a NEW identity, held unopened since {}",
            c.messages,
            format::time(c.held_since)
        );
        println!(
            "  safety number you had{}: {}",
            if c.was_verified { " (verified)" } else { "" },
            c.known_safety_number
        );
        println!("  safety number they claim:  {}", c.claimed_safety_number);
    }
    match claims.len() {
        0 => {}
        1 => println!(
            "a new device of theirs, or someone pretending: compare the new number with them in \
             person or on a call; if it matches, `sotto accept {user}` (the messages open), then \
             `sotto verify {user}`; if not, `sotto reject {user}` (or `sotto block {user}`)"
        ),
        _ => println!(
            "several different identities claim to be {who}: at most one is theirs; compare with \
             them in person, `sotto reject {user}` drops all the held messages"
        ),
    }
    let check = client
        .directory_identity(&user)
        .await
        .map_err(|e| errors::client(e, store))?;
    if check.changed {
        println!("the identity of {who} in the directory CHANGED");
        println!(
            "  safety number you had:       {}",
            check.known_safety_number
        );
        println!(
            "  safety number the directory: {}",
            check.directory_safety_number
        );
        if claims.is_empty() {
            println!(
                "a new device of theirs, or someone in between: compare the new number with them \
                 in person or on a call; if it matches, `sotto accept {user}`, then \
                 `sotto verify {user}`"
            );
        }
    } else {
        println!(
            "the directory holds the identity you have for {who} ({}); safety number {}",
            trust_of(&client, &user),
            check.known_safety_number
        );
    }
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto accept`: the identity held messages claim, else the directory's.
pub async fn accept(device: &Device, args: ContactArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let user = format::user(&client, &args.contact)?;
    let claims = claims_for(&client, &user, store)?;
    match claims.as_slice() {
        [] => {}
        [claim] => {
            let events = client
                .accept_identity_claim(claim)
                .map_err(|e| errors::client(e, store))?;
            println!(
                "accepted the new identity of {user} (safety number {}); UNVERIFIED until \
                 `sotto verify {user}`",
                claim.claimed_safety_number
            );
            for line in events.iter().filter_map(format::event) {
                println!("{line}");
            }
            client.close().map_err(|e| errors::client(e, store))?;
            return Ok(());
        }
        _ => {
            return Err(hinted(
                format!("several different identities claim to be {user}: nothing accepted"),
                "`sotto identity` shows them; `sotto reject` drops them all, then ask the person \
                 to write again",
            ));
        }
    }
    let check = client
        .directory_identity(&user)
        .await
        .map_err(|e| errors::client(e, store))?;
    if !check.changed {
        println!("nothing to accept: the directory holds the identity you have for {user}");
        client.close().map_err(|e| errors::client(e, store))?;
        return Ok(());
    }
    client
        .accept_checked_identity(&check)
        .map_err(|e| errors::client(e, store))?;
    println!(
        "accepted the new identity of {user} (safety number {}); UNVERIFIED until `sotto verify {user}`",
        check.directory_safety_number
    );
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// The held identity claims for `user` (RX-9).
fn claims_for(
    client: &Client,
    user: &UserId,
    store: &std::path::Path,
) -> anyhow::Result<Vec<HeldIdentityClaim>> {
    Ok(client
        .identity_claims()
        .map_err(|e| errors::client(e, store))?
        .into_iter()
        .filter(|c| c.user == *user)
        .collect())
}

/// `sotto reject`.
pub async fn reject(device: &Device, args: ContactArgs) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let user = format::user(&client, &args.contact)?;
    let mut dropped = 0;
    for claim in &claims_for(&client, &user, store)? {
        dropped += client
            .reject_identity_claim(claim)
            .map_err(|e| errors::client(e, store))?;
    }
    if dropped == 0 {
        println!("no held message claims a new identity for {user}");
    } else {
        println!(
            "dropped {dropped} held message(s); {user} keeps the identity you had \
             (`sotto block {user}` refuses everything from that user id)"
        );
    }
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto block` and `sotto unblock`.
pub async fn block(device: &Device, args: ContactArgs, block: bool) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let user = format::user(&client, &args.contact)?;
    let who = format::who(&client, &user);
    if block {
        client.block(&user).map_err(|e| errors::client(e, store))?;
        println!(
            "{who} is blocked: nothing from them is opened or answered, nothing is sent to them \
             (`sotto unblock {user}` lifts it)"
        );
    } else if client
        .unblock(&user)
        .map_err(|e| errors::client(e, store))?
    {
        println!("{who} is no longer blocked");
    } else {
        println!("{who} was not blocked");
    }
    client.close().map_err(|e| errors::client(e, store))?;
    Ok(())
}

/// `sotto passphrase`.
pub async fn passphrase(device: &Device) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let mut client = open(device).await?;
    let new = passphrase::for_change()?;
    client
        .change_passphrase(&new)
        .map_err(|e| errors::client(e, store))?;
    client.close().map_err(|e| errors::client(e, store))?;
    println!("the store now opens with the new passphrase");
    Ok(())
}

/// `sotto whoami`.
pub async fn whoami(device: &Device) -> anyhow::Result<()> {
    let store = device.store.as_path();
    let client = open(device).await?;
    let map = |e| errors::client(e, store);
    println!("user id:   {}", client.user_id());
    println!("store:     {}", store.display());
    println!("server:    {}", client.server_url());
    println!("broker:    {}", client.broker_address());
    println!("contacts:  {}", client.contacts().map_err(map)?.len());
    println!("groups:    {}", client.groups().len());
    println!(
        "outbox:    {} envelope(s) waiting",
        client.outbox_len().map_err(map)?
    );
    Ok(())
}
