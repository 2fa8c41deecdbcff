//! The study's report: REPORT.md, and the same as one self-contained
//! report.html with the figures inline. Both render one list of blocks, and
//! both escape every string that comes from a user (spec names, cells,
//! paths), so a spec named `<script>` shows as text.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::claims::{self, Claim, Evidence, Outcome, CLAIMS_CSV};
use super::{growth_dir, Plan, BENCH, RETRIEVAL, SCAN};
use crate::device::torch::LIBTORCH_VERSION;
use crate::error::{io, GdaError};
use crate::experiment::{self, cost, Grid, Status};
use crate::report::plot::{draw_error_bars, draw_markers, svg_chart, LegendEntry, Titles, GREY};
use crate::report::stats::{fmt_p, mean_std};
use crate::report::table::md;
use crate::report::units::{fmt_duration, human_count, si_flops};
use crate::util::fs::atomic_write;

pub const REPORT_MD: &str = "REPORT.md";
pub const REPORT_HTML: &str = "report.html";
/// The line of the header that differs between an interrupted and an
/// uninterrupted run of the same study (the tests compare the rest).
pub const TIME_LINE: &str = "Training time";

/// One piece of the report.
enum Block {
    Heading(usize, String),
    Para(String),
    List(Vec<String>),
    Table(Vec<String>, Vec<Vec<String>>),
    /// An SVG file, relative to the study directory, with its caption.
    Figure(String, String),
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn markdown(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        match b {
            Block::Heading(level, t) => {
                let _ = writeln!(s, "{} {}\n", "#".repeat(*level), md(t));
            }
            Block::Para(t) => {
                let _ = writeln!(s, "{}\n", md(t));
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(s, "- {}", md(i));
                }
                s.push('\n');
            }
            Block::Table(head, rows) => {
                let row =
                    |cells: &[String]| format!("| {} |\n", cells.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
                s += &row(head);
                s += &format!("|{}\n", "---|".repeat(head.len()));
                for r in rows {
                    s += &row(r);
                }
                s.push('\n');
            }
            Block::Figure(path, caption) => {
                let _ = writeln!(s, "![{}]({})\n", md(caption), path.replace(' ', "%20"));
            }
        }
    }
    s
}

fn html_page(title: &str, blocks: &[Block], dir: &Path) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:.25em .5em;text-align:left}}th{{background:#eee}}figure{{margin:1em 0}}figcaption{{color:#555}}</style></head><body>\n",
        html(title)
    );
    for b in blocks {
        match b {
            Block::Heading(level, t) => {
                let _ = writeln!(s, "<h{level}>{}</h{level}>", html(t));
            }
            Block::Para(t) => {
                let _ = writeln!(s, "<p>{}</p>", html(t));
            }
            Block::List(items) => {
                s += "<ul>\n";
                for i in items {
                    let _ = writeln!(s, "<li>{}</li>", html(i));
                }
                s += "</ul>\n";
            }
            Block::Table(head, rows) => {
                s += "<table><tr>";
                for h in head {
                    let _ = write!(s, "<th>{}</th>", html(h));
                }
                s += "</tr>\n";
                for r in rows {
                    s += "<tr>";
                    for c in r {
                        let _ = write!(s, "<td>{}</td>", html(c));
                    }
                    s += "</tr>\n";
                }
                s += "</table>\n";
            }
            Block::Figure(path, caption) => {
                // The SVG itself (plotters escapes its text), so the page
                // needs no file beside it.
                let svg = std::fs::read_to_string(dir.join(path)).unwrap_or_default();
                let svg = svg.trim_start_matches(|c| c != '<');
                let svg =
                    svg.strip_prefix("<?xml").map(|r| &r[r.find("?>").map(|i| i + 2).unwrap_or(0)..]).unwrap_or(svg);
                let _ = writeln!(s, "<figure>{svg}<figcaption>{}</figcaption></figure>", html(caption));
            }
        }
    }
    s + "</body></html>\n"
}

fn num(x: f64) -> String {
    format!("{x:+.4}")
}

/// A comparison's table row.
fn evidence_row(e: &Evidence) -> Vec<String> {
    let t = &e.test;
    let per_seed =
        e.seeds.iter().zip(&t.diffs).map(|(s, d)| format!("s{s}: {}", num(*d))).collect::<Vec<_>>().join(", ");
    vec![
        e.label.clone(),
        e.cell.clone(),
        t.n().to_string(),
        if per_seed.is_empty() { "–".into() } else { per_seed },
        if t.n() == 0 { "–".into() } else { num(t.mean) },
        t.ci.map(|(l, h)| format!("[{}, {}]", num(l), num(h))).unwrap_or_else(|| "–".into()),
        t.p.map(fmt_p).unwrap_or_else(|| "–".into()),
        e.outcome.name().into(),
    ]
}

/// A claim's figure: each comparison's mean Δ with its 95% interval, and 0.
fn claim_figure(dir: &Path, claim: &Claim) -> Result<Option<String>, GdaError> {
    let pts: Vec<(f64, f64, f64)> = claim
        .evidence
        .iter()
        .enumerate()
        .filter(|(_, e)| e.test.n() > 0)
        .map(|(i, e)| (i as f64 + 1.0, e.test.mean, e.test.ci.map(|(l, h)| (h - l) / 2.0).unwrap_or(0.0)))
        .collect();
    if pts.is_empty() {
        return Ok(None);
    }
    let lo = pts.iter().map(|p| p.1 - p.2).fold(0.0f64, f64::min);
    let hi = pts.iter().map(|p| p.1 + p.2).fold(0.0f64, f64::max);
    let pad = ((hi - lo) * 0.1).max(1e-4);
    let rel = format!("figures/claim-{}.svg", claim.number);
    let path = dir.join(&rel);
    let parent = path.parent().expect("figures/");
    std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    let legend: Vec<LegendEntry> = claim
        .evidence
        .iter()
        .enumerate()
        .filter(|(_, e)| e.test.n() > 0)
        .map(|(i, e)| {
            let cell = if e.cell.is_empty() { String::new() } else { format!(" ({})", e.cell) };
            LegendEntry::styled(i, format!("{}: {}{cell}", i + 1, e.label), false)
        })
        .collect();
    let y = format!("Δ {} (A − B), mean and 95% CI", claim.evidence[0].metric);
    let held = format!("claim {}: {}", claim.number, claim.verdict.name());
    let titles = Titles { title: claim.title, held: &held, x: "comparison", y: &y };
    let n = claim.evidence.len() as f64;
    svg_chart(&path, &titles, (0.5..n + 0.5, lo - pad..hi + pad), true, &legend, |chart| {
        chart
            .draw_series(plotters::series::LineSeries::new([(0.5, 0.0), (n + 0.5, 0.0)], GREY))
            .map_err(crate::report::plot::plot_err)?;
        for (k, p) in pts.iter().enumerate() {
            let color = legend[k].color;
            draw_error_bars(chart, [*p], color)?;
            draw_markers(chart, [(p.0, p.1)], k, 5, plotters::style::ShapeStyle::from(color).filled())?;
        }
        Ok(())
    })?;
    Ok(Some(rel))
}

/// The header: what was trained, on what, with what.
fn header(plan: &Plan) -> Vec<Block> {
    let spec = &plan.scan;
    let (m, t) = (&spec.model, &spec.train);
    let (flops, secs, runs) = compute(plan);
    let study = plan.study();
    let tokens = t.steps * t.batch_size * t.context * t.grad_accum;
    let mut items = vec![
        format!("Preset: {} ({}){}", plan.preset.name, plan.preset.origin, if study.about.is_empty() { String::new() } else { format!(": {}", study.about) }),
        format!("Data: {} (tokenizer {}, {} held out)", spec.data.corpus, spec.data.tokenizer, spec.data.val_fraction),
        format!(
            "Model: d_model {}, {} layers, head_dim {}, {} signal heads (the 1:1 arm has as many noise heads); context {}",
            m.d_model, m.n_layers, m.head_dim, m.signal_heads, t.context
        ),
        format!(
            "Budget: the `{}` policy; {} steps × {} sequences per run ({} tokens); ratios {}",
            experiment::policy_name(spec.sweep.policy),
            t.steps,
            t.batch_size * t.grad_accum,
            human_count(tokens),
            super::join(&study.ratios)
        ),
        format!("Seeds: {} (every comparison is paired by seed)", super::join(&study.seeds)),
        format!("Software: gda {}, libtorch {LIBTORCH_VERSION}", env!("CARGO_PKG_VERSION")),
        format!("Compute: {} of training in {runs} runs (6·N·tokens plus attention; shared runs counted once)", si_flops(flops)),
        format!("{TIME_LINE}: {} summed over the runs, as each recorded it", fmt_duration(secs)),
    ];
    if !spec.sweep.grid.is_empty() {
        items.insert(4, format!("Scan grid: {}", crate::experiment::plan::describe_grid(spec)));
    }
    vec![Block::List(items)]
}

/// Training FLOPs, recorded seconds and runs of every finished point of
/// every stage, the ablation's linked shared arms counted once.
fn compute(plan: &Plan) -> (f64, f64, usize) {
    let mut dirs = vec![plan.dir.join(SCAN), plan.dir.join(super::ABLATION), plan.dir.join(RETRIEVAL)];
    dirs.extend(plan.study().seeds.iter().map(|&s| growth_dir(plan, s)));
    let (mut flops, mut secs, mut runs) = (0.0, 0.0, 0);
    for d in dirs {
        let Ok(grid) = Grid::load(&d) else { continue };
        for p in &grid.points {
            let link = experiment::point_dir(&d, p).is_symlink();
            if let (Status::Done(s), false) = (experiment::status(&d, p), link) {
                flops += cost(p).2;
                secs += s.elapsed_s;
                runs += 1;
            }
        }
    }
    (flops, secs, runs)
}

const RULE: &str = "Each comparison is a paired difference Δ = A − B over the seeds both arms finished, with its 95% confidence interval (Student t, n − 1 degrees of freedom) and two-sided p. It favours the claim when its interval lies wholly on the claim's side of 0 (the rule column: A < B for a loss, A > B for a loss that should be worse or an accuracy), is against it when wholly on the other side, and is unclear otherwise (an interval holding 0, or n < 2). Claim 3 says \"no worse\": favoured when the interval's upper end is below the margin (A < B + margin), against when the interval lies wholly above 0, unclear otherwise. A claim is supported when at least one comparison favours it and none is against it, contradicted when at least one is against it and none favours it, and inconclusive at this scale otherwise.";

fn claim_blocks(dir: &Path, c: &Claim) -> Result<Vec<Block>, GdaError> {
    let mut out = vec![Block::Heading(2, format!("Claim {}: {}", c.number, c.title))];
    let sources: Vec<&str> = {
        let mut s: Vec<&str> = c.evidence.iter().map(|e| e.source.as_str()).collect();
        s.dedup();
        s
    };
    if c.evidence.is_empty() {
        out.push(Block::Para("No comparison could be made: its arms were not trained.".into()));
    } else {
        let e0 = &c.evidence[0];
        out.push(Block::Para(format!(
            "Δ = A − B in {}, paired by seed; rule {} (see How verdicts are chosen). From {} (per seed: {CLAIMS_CSV}, claim {}).",
            e0.metric,
            e0.rule.name(),
            sources.join(", "),
            c.number
        )));
        let head = ["A vs B", "cell", "n", "Δ per seed", "mean Δ", "95% CI", "p", "outcome"].map(String::from).to_vec();
        out.push(Block::Table(head, c.evidence.iter().map(evidence_row).collect()));
        if let Some(fig) = claim_figure(dir, c)? {
            out.push(Block::Figure(
                fig,
                format!("Claim {}: mean Δ per comparison with its 95% interval; 0 in grey", c.number),
            ));
        }
    }
    let favours = c.evidence.iter().filter(|e| e.outcome == Outcome::Favours).count();
    let against = c.evidence.iter().filter(|e| e.outcome == Outcome::Against).count();
    out.push(Block::Para(format!(
        "Verdict: {} ({favours} of {} comparisons favour the claim, {against} are against it).",
        c.verdict.name(),
        c.evidence.len()
    )));
    Ok(out)
}

/// mean ± std over seeds, with n.
fn stat(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    format!("{m:.4} ± {s:.4} (n = {})", v.len())
}

/// The retrieval stage's accuracy and attention noise per ratio.
fn retrieval_blocks(dir: &Path) -> Vec<Block> {
    let eval = dir.join(RETRIEVAL).join("eval");
    let all = |_: &dyn Fn(&str) -> String| true;
    let whole = |get: &dyn Fn(&str) -> String| get("head_group") == "all";
    let acc = claims::per_ratio(&eval.join("retrieval.csv"), "acc", &all);
    let noise = claims::per_ratio(&eval.join("attention.csv"), "noise_mass", &whole);
    let answer = claims::per_ratio(&eval.join("attention.csv"), "answer_mass", &whole);
    let mut out = vec![
        Block::Heading(2, "Also reported: retrieval and attention noise".into()),
        Block::Para(format!(
            "As the DIFF paper reports them: exact-match retrieval accuracy, and the attention mass on the answer and on everything else (noise), per ratio; mean ± std over seeds. From {RETRIEVAL}/eval/retrieval.csv and {RETRIEVAL}/eval/attention.csv."
        )),
    ];
    if acc.is_empty() {
        out.push(Block::Para("No retrieval stage in this preset (add [study.retrieval]).".into()));
        return out;
    }
    let find = |t: &[(usize, Vec<f64>)], r: usize| {
        t.iter().find(|x| x.0 == r).map(|x| stat(&x.1)).unwrap_or_else(|| "–".into())
    };
    let rows = acc.iter().map(|(r, v)| vec![format!("{r}:1"), stat(v), find(&answer, *r), find(&noise, *r)]).collect();
    out.push(Block::Table(["ratio", "accuracy", "answer mass", "noise mass"].map(String::from).to_vec(), rows));
    out
}

/// The benchmark average per ratio (claim 5's arms, unpaired).
fn bench_blocks(dir: &Path) -> Vec<Block> {
    let average = |get: &dyn Fn(&str) -> String| get("task") == crate::report::eval::bench::AVERAGE;
    let rows: Vec<Vec<String>> = claims::per_ratio(&dir.join(BENCH).join("bench.csv"), "acc", &average)
        .iter()
        .map(|(r, v)| vec![format!("{r}:1"), stat(v)])
        .collect();
    let mut out = vec![Block::Para(format!(
        "Benchmark average accuracy per ratio (mean ± std over seeds; every task in {BENCH}/bench.csv, all grid cells together):"
    ))];
    out.push(Block::Table(vec!["ratio".into(), "average acc".into()], rows));
    let built = dir.join(BENCH).join("tasks");
    out.push(Block::Para(if built.is_dir() {
        format!("The tasks were built from the held-out split of the study's corpus by gda data make-tasks ({BENCH}/tasks/: corpus_cloze, a last-word cloze, and corpus_choice, a four-way choice of continuation); they are not the paper's benchmarks, whose +2.54% at 4:1 they cannot confirm or refute directly.")
    } else {
        "The tasks are the files given with --tasks.".into()
    }));
    out
}

/// Writes claims.csv, the figures, REPORT.md and report.html.
pub fn write(plan: &Plan) -> Result<Vec<PathBuf>, GdaError> {
    let dir = &plan.dir;
    let claims = claims::gather(dir, plan.study())?;
    let csv_path = dir.join(CLAIMS_CSV);
    atomic_write(&csv_path, &claims::csv(&claims)).map_err(io("cannot write", &csv_path))?;
    let title = format!("gda reproduce: {}", plan.preset.name);
    let mut blocks = vec![Block::Heading(1, title.clone())];
    blocks.extend(header(plan));
    blocks.push(Block::Heading(2, "Verdicts".into()));
    let rows = claims
        .iter()
        .map(|c| {
            let lead = c.evidence.iter().find(|e| e.outcome != Outcome::Unclear).or(c.evidence.first());
            let evidence = lead
                .map(|e| {
                    let ci = e.test.ci.map(|(l, h)| format!(" [{}, {}]", num(l), num(h))).unwrap_or_default();
                    format!(
                        "{}: Δ {}{ci} (n = {})",
                        e.label,
                        if e.test.n() == 0 { "–".into() } else { num(e.test.mean) },
                        e.test.n()
                    )
                })
                .unwrap_or_else(|| "–".into());
            vec![c.number.to_string(), c.title.to_string(), c.verdict.name().to_string(), evidence]
        })
        .collect();
    blocks.push(Block::Table(
        ["claim", "statement", "verdict", "evidence (a deciding comparison)"].map(String::from).to_vec(),
        rows,
    ));
    blocks.push(Block::Heading(2, "How verdicts are chosen".into()));
    blocks.push(Block::Para(RULE.to_string()));
    for c in &claims {
        blocks.extend(claim_blocks(dir, c)?);
        if c.number == 2 {
            let best = dir.join(SCAN).join("best_ratio.csv");
            if best.is_file() && !plan.scan.sweep.grid.is_empty() {
                blocks.push(Block::Para(format!("The best ratio per grid cell (does it move with scale?) is in {SCAN}/best_ratio.md and {SCAN}/best_ratio.csv.")));
                blocks.extend(best_blocks(&best));
            }
        }
        if c.number == 5 {
            blocks.extend(bench_blocks(dir));
        }
    }
    blocks.extend(retrieval_blocks(dir));
    blocks.push(Block::Heading(2, "Where everything is".into()));
    blocks.push(Block::List(vec![
        format!("{SCAN}/, ablation/, growth/s<seed>/, {RETRIEVAL}/: experiment directories (gda status, gda report, gda eval work on each)"),
        format!("{BENCH}/: benchmark scores of the scan's runs (bench.csv, bench_items.jsonl)"),
        format!("{CLAIMS_CSV}: every comparison per seed, with the values it was computed from"),
    ]));
    let md_path = dir.join(REPORT_MD);
    atomic_write(&md_path, markdown(&blocks).as_bytes()).map_err(io("cannot write", &md_path))?;
    let html_path = dir.join(REPORT_HTML);
    atomic_write(&html_path, html_page(&title, &blocks, dir).as_bytes()).map_err(io("cannot write", &html_path))?;
    Ok(vec![md_path, html_path, csv_path])
}

/// The scan's best_ratio.csv as a table: each cell (its grid columns), its
/// best ratio and the verdict on it.
fn best_blocks(path: &Path) -> Vec<Block> {
    let Ok((head, rows)) = crate::report::table::read(path) else { return Vec::new() };
    let keep: Vec<usize> = head
        .iter()
        .enumerate()
        .filter(|(_, h)| {
            h.contains('.') || ["best_ratio", "best_val_loss_mean", "runner_up_ratio", "verdict"].contains(&h.as_str())
        })
        .map(|(i, _)| i)
        .collect();
    let cell = |r: &[String], i: usize| {
        let v = r.get(i).cloned().unwrap_or_default();
        match v.parse::<f64>() {
            Ok(x) if v.contains('.') && !head[i].contains('.') => format!("{x:.4}"),
            _ => v,
        }
    };
    let rows = rows.iter().map(|r| keep.iter().map(|&i| cell(r, i)).collect()).collect();
    vec![Block::Table(keep.iter().map(|&i| head[i].clone()).collect(), rows)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A string from a user renders as text in both formats.
    #[test]
    fn user_strings_are_escaped() {
        let blocks = vec![
            Block::Heading(1, "<script>alert(1)</script>".into()),
            Block::Table(vec!["a|b".into()], vec![vec!["<img src=x onerror=alert(1)>".into()]]),
        ];
        let page = html_page("<t>", &blocks, Path::new("."));
        assert!(!page.contains("<script>alert") && !page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        let text = markdown(&blocks);
        assert!(!text.contains("<script>") && text.contains("a\\|b"), "{text}");
    }
}
