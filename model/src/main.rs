//! `sotto-model`: check the Sotto protocol model, explore it, export traces.
//!
//! ```text
//! sotto-model check [--config small|default|deep] [--variant NAME [--svg FILE]] [--bfs|--dfs|--simulate SEED] [--threads N]
//! sotto-model check --list-variants
//! sotto-model explore [--config NAME] [--variant NAME] [--addr 127.0.0.1:3000]
//! sotto-model export-traces DIR [--config NAME] [--runs-only]
//! ```
//!
//! Exit status: 0 when every property holds and every example is found; 1 on a violation (or,
//! with `--variant`, always, since a broken variant must fail); 2 on bad usage. With `--variant`,
//! `--svg FILE` also writes the counterexample as a message sequence chart (`sotto_model::chart`).

use sotto_model::chart;
use sotto_model::check::{self, Mode, Options};
use sotto_model::scenario::Config;
use sotto_model::trace::{Trace, covering_runs};
use sotto_model::{SottoModel, Variant};
use stateright::Model;
use std::process::ExitCode;

const USAGE: &str = "usage:
  sotto-model check [--config small|default|deep] [--variant NAME [--svg FILE]] [--bfs|--dfs|--simulate SEED] [--threads N]
  sotto-model check --list-variants
  sotto-model explore [--config NAME] [--variant NAME] [--addr 127.0.0.1:3000]
  sotto-model export-traces DIR [--config NAME] [--runs-only]";

struct Args {
    command: String,
    config: Config,
    variant: Variant,
    mode: Mode,
    threads: usize,
    list_variants: bool,
    addr: String,
    dir: Option<String>,
    runs_only: bool,
    svg: Option<std::path::PathBuf>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let command = it.next().ok_or("missing command")?;
    if !["check", "explore", "export-traces", "--list-variants"].contains(&command.as_str()) {
        return Err(format!("unknown command `{command}`"));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut a = Args {
        list_variants: command == "--list-variants",
        command,
        config: Config::default_config(),
        variant: Variant::None,
        mode: Mode::Bfs,
        threads,
        addr: "127.0.0.1:3000".to_string(),
        dir: None,
        runs_only: false,
        svg: None,
    };
    let value = |it: &mut dyn Iterator<Item = String>, flag: &str| {
        it.next().ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => {
                let v = value(&mut it, "--config")?;
                a.config = Config::named(&v).ok_or_else(|| {
                    format!(
                        "unknown config `{v}` (one of: {})",
                        Config::NAMES.join(", ")
                    )
                })?;
            }
            "--variant" => {
                let v = value(&mut it, "--variant")?;
                a.variant = Variant::named(&v)
                    .ok_or_else(|| format!("unknown variant `{v}` (see --list-variants)"))?;
            }
            "--bfs" => a.mode = Mode::Bfs,
            "--dfs" => a.mode = Mode::Dfs,
            "--simulate" => {
                let v = value(&mut it, "--simulate")?;
                a.mode = Mode::Simulate(v.parse().map_err(|_| format!("bad seed `{v}`"))?);
            }
            "--threads" => {
                let v = value(&mut it, "--threads")?;
                a.threads = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| format!("bad thread count `{v}`"))?;
            }
            "--addr" => a.addr = value(&mut it, "--addr")?,
            "--list-variants" => a.list_variants = true,
            "--runs-only" => a.runs_only = true,
            "--svg" => a.svg = Some(value(&mut it, "--svg")?.into()),
            other if a.command == "export-traces" && a.dir.is_none() && !other.starts_with('-') => {
                a.dir = Some(other.to_string());
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    if a.svg.is_some() && (a.command != "check" || a.variant == Variant::None) {
        return Err("--svg needs check --variant NAME".into());
    }
    if a.command == "export-traces" && a.dir.is_none() {
        return Err("export-traces needs a directory".into());
    }
    Ok(a)
}

fn list_variants() -> ExitCode {
    for v in Variant::BROKEN {
        println!(
            "{:<30} {}  [breaks: {}]",
            v.name(),
            v.describe(),
            v.breaks().unwrap_or("-")
        );
    }
    ExitCode::SUCCESS
}

fn check_variant(a: &Args) -> ExitCode {
    let v = a.variant;
    println!(
        "sotto-model check: config `{}`, variant `{}`",
        a.config.name,
        v.name()
    );
    println!("  removed safeguard: {}", v.describe());
    let model = SottoModel::new(a.config.clone(), v);
    let start = std::time::Instant::now();
    match check::shortest_counterexample(&a.config, v, a.threads) {
        Some((prop, actions)) => {
            println!(
                "\nCOUNTEREXAMPLE  {prop}\n  shortest: {} steps (breadth-first; a run bounded one step shorter finds none), {:.1} s\n",
                actions.len(),
                start.elapsed().as_secs_f64()
            );
            print!("{}", check::render_steps(&model, &actions));
            if let Some(path) = &a.svg {
                let Some(trace) =
                    Trace::record(&model, &format!("counterexample: {prop}"), &actions)
                else {
                    eprintln!("error: the counterexample does not replay");
                    return ExitCode::FAILURE;
                };
                if let Err(e) = std::fs::write(path, chart::render(&trace)) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
                println!("\nchart: {}", path.display());
            }
            ExitCode::FAILURE
        }
        None => {
            println!(
                "\nno counterexample found for `{}`: the variant did not break it",
                v.breaks().unwrap_or("-")
            );
            ExitCode::FAILURE
        }
    }
}

fn check(a: &Args) -> ExitCode {
    if a.variant != Variant::None {
        return check_variant(a);
    }
    let mode = match a.mode {
        Mode::Bfs => "bfs".to_string(),
        Mode::Dfs => "dfs".to_string(),
        Mode::Simulate(s) => format!("simulate {s}"),
    };
    println!(
        "sotto-model check: config `{}` ({} users, {} scenario steps), {mode}, {} threads",
        a.config.name,
        a.config.devices,
        a.config.script.len(),
        a.threads
    );
    let opts = Options {
        config: a.config.clone(),
        variant: a.variant,
        mode: a.mode,
        threads: a.threads,
        progress: true,
        simulate_states: 2_000_000,
    };
    let mut report = check::run(&opts);
    // A breadth-first counterexample is short but not always shortest: search again, bounded.
    for r in report.results.iter_mut() {
        if let check::Verdict::Counterexample(a) = &r.verdict {
            if let Some(short) =
                check::shortest_discovery(&opts.config, opts.variant, r.name, opts.threads, a.len())
            {
                r.verdict = check::Verdict::Counterexample(short);
            }
        }
    }
    let model = SottoModel::new(a.config.clone(), a.variant);
    print!("{}", check::render_report(&model, &report));

    if report.passed() {
        println!("\nall properties hold");
        ExitCode::SUCCESS
    } else {
        println!("\nFAILED");
        ExitCode::FAILURE
    }
}

fn explore(a: &Args) -> ExitCode {
    let addr = a.addr.clone();
    if !addr.starts_with("127.") && !addr.starts_with("localhost") {
        eprintln!("error: explore serves on loopback only (got `{addr}`)");
        return ExitCode::from(2);
    }
    println!(
        "Explorer for config `{}`, variant `{}`: http://{addr}/",
        a.config.name,
        a.variant.name()
    );
    let model = SottoModel::new(a.config.clone(), a.variant);
    let _checker = model.checker().threads(a.threads).serve(addr);
    ExitCode::SUCCESS
}

fn export(a: &Args) -> ExitCode {
    let dir = std::path::PathBuf::from(a.dir.as_deref().unwrap_or("traces"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let model = SottoModel::new(a.config.clone(), Variant::None);
    let names: Vec<&'static str> = model
        .properties()
        .iter()
        .filter(|p| p.expectation == stateright::Expectation::Sometimes)
        .map(|p| p.name)
        .collect();
    // `--runs-only`: the covering runs without the discoveries (no exhaustive check; for
    // configurations too large to check in passing, such as `deep`).
    let found = if a.runs_only {
        Vec::new()
    } else {
        check::examples(&a.config, &names)
    };
    if let Some(missing) = names
        .iter()
        .find(|n| !a.runs_only && !found.iter().any(|(f, _)| f == *n))
    {
        eprintln!("error: no example for `{missing}`");
        return ExitCode::FAILURE;
    }
    let mut traces: Vec<(&str, String, Vec<sotto_model::Action>)> = found
        .into_iter()
        .map(|(n, actions)| ("discovery", n.to_string(), actions))
        .collect();
    for (seed, actions) in covering_runs(&model, 400, 120) {
        traces.push(("run", format!("run {seed}"), actions));
    }
    for (i, (kind, name, actions)) in traces.iter().enumerate() {
        let Some(trace) = Trace::record(&model, name, actions) else {
            eprintln!("error: `{name}` does not replay");
            return ExitCode::FAILURE;
        };
        let slug = Trace::slug(name);
        let file = dir.join(format!("{kind}-{i:03}-{slug}.json"));
        let json = serde_json::to_string_pretty(&trace).expect("traces serialize");
        if let Err(e) = std::fs::write(&file, json) {
            eprintln!("error: cannot write {}: {e}", file.display());
            return ExitCode::from(2);
        }
    }
    println!("wrote {} traces to {}", traces.len(), dir.display());
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.list_variants {
        return list_variants();
    }
    match args.command.as_str() {
        "check" => check(&args),
        "explore" => explore(&args),
        _ => export(&args),
    }
}
