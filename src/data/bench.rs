//! Zero-shot benchmark tasks read from local JSONL files in the layout of
//! their public releases (fields in docs/bench.md), turned into the
//! (context, continuation) requests lm-evaluation-harness 0.4 builds for
//! them, and tokenized the way it tokenizes a pair.
//!
//! Every text rule here copies lm-eval's task configs (hellaswag/utils.py,
//! piqa.yaml, arc_easy.yaml, winogrande/preprocess_winogrande.py,
//! lambada_openai.yaml) so that the same model scores the same numbers in
//! both; docs/bench.md lists them.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Tokenizer;
use crate::error::{input, io, GdaError};

/// How a task file is laid out and scored; picked by the task's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Hellaswag,
    Piqa,
    /// ARC-Easy and ARC-Challenge share a layout.
    Arc,
    Winogrande,
    Lambada,
    /// `{"context": str, "choices": [str], "gold": int}`.
    Generic,
}

impl Format {
    /// The format a task name picks: the known names, else the generic one.
    pub fn of(name: &str) -> Format {
        match name {
            "hellaswag" => Format::Hellaswag,
            "piqa" => Format::Piqa,
            "arc_easy" | "arc_challenge" => Format::Arc,
            "winogrande" => Format::Winogrande,
            "lambada" | "lambada_openai" => Format::Lambada,
            _ => Format::Generic,
        }
    }

    /// lm-eval reports acc_norm for the multiple-choice tasks whose choices
    /// are the continuations (not for winogrande, whose choices are
    /// contexts, nor for lambada, a cloze).
    pub fn has_acc_norm(self) -> bool {
        !matches!(self, Format::Winogrande | Format::Lambada)
    }
}

/// One task: its name (the table's `task` column), format and file.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub name: String,
    pub format: Format,
    pub path: PathBuf,
}

/// The task names with their own format (any other name is generic JSONL).
pub const KNOWN: &str = "hellaswag, piqa, arc_easy, arc_challenge, winogrande, lambada (or lambada_openai)";

/// The tasks of `--tasks`: `NAME=PATH` entries, or directories whose
/// `*.jsonl` files are tasks named after the file (in name order).
pub fn parse_tasks(specs: &[String]) -> Result<Vec<Task>, GdaError> {
    let mut out: Vec<Task> = Vec::new();
    for s in specs {
        match s.split_once('=') {
            Some((name, path)) => {
                let name = name.trim();
                if name.is_empty() || path.is_empty() {
                    return Err(input(format!(
                        "--tasks {s}: allowed: NAME=PATH (NAME one of {KNOWN}, or any name for generic JSONL) or a directory of NAME.jsonl files"
                    )));
                }
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(input(format!("--tasks {s}: {} is not a file", path.display())));
                }
                out.push(Task { name: name.to_string(), format: Format::of(name), path });
            }
            None => {
                let dir = Path::new(s);
                if !dir.is_dir() {
                    return Err(input(format!(
                        "--tasks {s}: not a directory; allowed: NAME=PATH or a directory of NAME.jsonl files"
                    )));
                }
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(io("cannot read", dir))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "jsonl"))
                    .collect();
                files.sort();
                if files.is_empty() {
                    return Err(input(format!("--tasks {s}: the directory holds no NAME.jsonl task file")));
                }
                for path in files {
                    let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                    out.push(Task { format: Format::of(&name), name, path });
                }
            }
        }
    }
    if let Some(t) = out.iter().enumerate().find_map(|(i, t)| out[..i].iter().find(|u| u.name == t.name)) {
        return Err(input(format!("--tasks names task {} twice; allowed: each task once", t.name)));
    }
    Ok(out)
}

/// One (context, continuation) pair whose log-likelihood is scored, as
/// lm-eval's `Instance.arguments`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub context: String,
    pub continuation: String,
}

/// One task item: its requests (one per choice; one for a cloze), the gold
/// choice, and the length in characters of each choice (acc_norm divides by it).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// 1-based line of the task file.
    pub line: usize,
    pub requests: Vec<Request>,
    pub gold: usize,
    pub choice_chars: Vec<usize>,
}

/// Bad input naming the line of the first byte that is not UTF-8 and, where
/// the line still reads as JSON, the field that holds it.
fn not_utf8(task: &Task, bytes: &[u8], at: usize) -> GdaError {
    let start = bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let end = bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| at + i);
    let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let field = serde_json::from_str::<Value>(&String::from_utf8_lossy(&bytes[start..end])).ok().and_then(|doc| {
        let obj = doc.as_object()?.clone();
        obj.into_iter().find(|(_, v)| v.to_string().contains('\u{FFFD}')).map(|(k, _)| k)
    });
    let field = field.map_or(String::new(), |k| format!(" field `{k}`:"));
    input(format!(
        "{}:{line}:{field} byte {} of the line is not UTF-8; allowed: UTF-8 text ({} format; see docs/bench.md)",
        task.path.display(),
        at - start + 1,
        task.name
    ))
}

/// lm-eval's default `target_delimiter`, put between context and choice.
const DELIMITER: &str = " ";

/// Reads the first `limit` items (all for None) of `task`, refusing a bad
/// one with the file, line and field.
pub fn read_task(task: &Task, limit: Option<usize>) -> Result<Vec<Item>, GdaError> {
    let bytes = std::fs::read(&task.path).map_err(io("cannot read", &task.path))?;
    let text = String::from_utf8(bytes).map_err(|e| not_utf8(task, e.as_bytes(), e.utf8_error().valid_up_to()))?;
    let mut items = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if limit.is_some_and(|n| items.len() >= n) {
            break;
        }
        if raw.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        let bad = |field: &str, msg: String| {
            input(format!(
                "{}:{line}: field `{field}`: {msg} ({} format; see docs/bench.md)",
                task.path.display(),
                task.name
            ))
        };
        let doc: Value = serde_json::from_str(raw)
            .map_err(|e| input(format!("{}:{line}: not a JSON object: {e}", task.path.display())))?;
        if !doc.is_object() {
            return Err(input(format!("{}:{line}: not a JSON object", task.path.display())));
        }
        let item = match task.format {
            Format::Hellaswag => hellaswag(&doc, &bad),
            Format::Piqa => piqa(&doc, &bad),
            Format::Arc => arc(&doc, &bad),
            Format::Winogrande => winogrande(&doc, &bad),
            Format::Lambada => lambada(&doc, &bad),
            Format::Generic => generic(&doc, &bad),
        }?;
        // lm-eval cannot score an empty context (its _encode_pair asserts),
        // nor an empty choice (acc_norm would divide by zero).
        for r in &item.1 {
            if r.context.trim_end().is_empty() {
                return Err(bad(context_field(task.format), "the context is empty".into()));
            }
        }
        if let Some(c) = item.2.iter().position(|&n| n == 0) {
            return Err(bad(choices_field(task.format), format!("choice {c} is empty")));
        }
        items.push(Item { line, requests: item.1, gold: item.0, choice_chars: item.2 });
    }
    if items.is_empty() {
        return Err(input(format!("{}: no items (an empty task file)", task.path.display())));
    }
    Ok(items)
}

fn context_field(f: Format) -> &'static str {
    match f {
        Format::Hellaswag => "ctx_a",
        Format::Piqa => "goal",
        Format::Arc => "question",
        Format::Winogrande => "sentence",
        Format::Lambada => "text",
        Format::Generic => "context",
    }
}

fn choices_field(f: Format) -> &'static str {
    match f {
        Format::Hellaswag => "endings",
        Format::Piqa => "sol1",
        Format::Arc => "choices.text",
        Format::Winogrande => "option1",
        Format::Lambada => "text",
        Format::Generic => "choices",
    }
}

type Bad<'a> = &'a dyn Fn(&str, String) -> GdaError;
/// (gold, requests, choice lengths in characters).
type Parsed = (usize, Vec<Request>, Vec<usize>);

fn string<'a>(doc: &'a Value, field: &str, bad: Bad) -> Result<&'a str, GdaError> {
    match doc.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(bad(field, format!("a string was expected, found {other}"))),
        None => Err(bad(field, "missing".into())),
    }
}

fn strings(v: Option<&Value>, field: &str, bad: Bad) -> Result<Vec<String>, GdaError> {
    let arr = match v {
        Some(Value::Array(a)) => a,
        Some(other) => return Err(bad(field, format!("a list of strings was expected, found {other}"))),
        None => return Err(bad(field, "missing".into())),
    };
    arr.iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(field, format!("a list of strings was expected, found {x}")))
        })
        .collect()
}

/// An index field: a JSON integer or a string of digits (the HF releases
/// store labels as strings), below `n`.
fn index(doc: &Value, field: &str, n: usize, bad: Bad) -> Result<usize, GdaError> {
    let v = doc.get(field).ok_or_else(|| bad(field, "missing".into()))?;
    let i = match v {
        Value::Number(x) => x.as_u64().map(|x| x as usize),
        Value::String(s) => s.trim().parse::<usize>().ok(),
        _ => None,
    };
    match i {
        Some(i) if i < n => Ok(i),
        _ => Err(bad(field, format!("{v} is not a choice index; allowed: 0..{}", n.saturating_sub(1)))),
    }
}

/// Choices scored as continuations of one context: `" " + choice` each.
fn choice_requests(context: &str, choices: &[String]) -> Vec<Request> {
    choices.iter().map(|c| Request { context: context.to_string(), continuation: format!("{DELIMITER}{c}") }).collect()
}

fn chars(choices: &[String]) -> Vec<usize> {
    choices.iter().map(|c| c.chars().count()).collect()
}

/// Python's `str.capitalize()`: the first character upper-cased, the rest
/// lower-cased.
fn capitalize(s: &str) -> String {
    let mut it = s.chars();
    match it.next() {
        Some(first) => first.to_uppercase().chain(it.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}

/// lm-eval's `hellaswag.utils.preprocess`: strip; " [title]" → ". ";
/// remove every `[...]` (the regex `\[.*?\]`, so not across a newline);
/// "  " → " " (one pass).
pub fn hellaswag_preprocess(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find([']', '\n']) {
            Some(close) if after.as_bytes()[close] == b']' => rest = &after[close + 1..],
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

fn hellaswag(doc: &Value, bad: Bad) -> Result<Parsed, GdaError> {
    let (a, b, label) = (string(doc, "ctx_a", bad)?, string(doc, "ctx_b", bad)?, string(doc, "activity_label", bad)?);
    let endings = strings(doc.get("endings"), "endings", bad)?;
    if endings.len() < 2 {
        return Err(bad("endings", format!("{} endings; allowed: at least 2", endings.len())));
    }
    let gold = index(doc, "label", endings.len(), bad)?;
    let query = hellaswag_preprocess(&format!("{label}: {a} {}", capitalize(b)));
    let choices: Vec<String> = endings.iter().map(|e| hellaswag_preprocess(e)).collect();
    Ok((gold, choice_requests(&query, &choices), chars(&choices)))
}

fn piqa(doc: &Value, bad: Bad) -> Result<Parsed, GdaError> {
    let goal = string(doc, "goal", bad)?;
    let choices = vec![string(doc, "sol1", bad)?.to_string(), string(doc, "sol2", bad)?.to_string()];
    let gold = index(doc, "label", 2, bad)?;
    Ok((gold, choice_requests(&format!("Question: {goal}\nAnswer:"), &choices), chars(&choices)))
}

fn arc(doc: &Value, bad: Bad) -> Result<Parsed, GdaError> {
    let q = string(doc, "question", bad)?;
    let ch = doc.get("choices").ok_or_else(|| bad("choices", "missing".into()))?;
    let text = strings(ch.get("text"), "choices.text", bad)?;
    let labels = strings(ch.get("label"), "choices.label", bad)?;
    if text.len() != labels.len() || text.len() < 2 {
        return Err(bad(
            "choices",
            format!("{} texts and {} labels; allowed: as many labels as texts, at least 2", text.len(), labels.len()),
        ));
    }
    let key = string(doc, "answerKey", bad)?;
    // lm-eval: choices.label.index(answerKey), whether the labels are
    // letters or the digits some items use.
    let gold = labels
        .iter()
        .position(|l| l == key)
        .ok_or_else(|| bad("answerKey", format!("{key:?} is not one of choices.label {labels:?}")))?;
    Ok((gold, choice_requests(&format!("Question: {q}\nAnswer:"), &text), chars(&text)))
}

fn winogrande(doc: &Value, bad: Bad) -> Result<Parsed, GdaError> {
    let s = string(doc, "sentence", bad)?;
    let opts = [string(doc, "option1", bad)?, string(doc, "option2", bad)?];
    let gold = match doc.get("answer") {
        Some(Value::String(a)) if a == "1" || a == "2" => a.parse::<usize>().unwrap_or(1) - 1,
        Some(Value::Number(n)) if n.as_u64() == Some(1) || n.as_u64() == Some(2) => {
            n.as_u64().unwrap_or(1) as usize - 1
        }
        Some(other) => return Err(bad("answer", format!("{other}; allowed: \"1\" or \"2\""))),
        None => return Err(bad("answer", "missing".into())),
    };
    let idx = s.find('_').ok_or_else(|| bad("sentence", "no `_` blank to fill".into()))?;
    // Partial scoring: each option completes the context, and the rest of
    // the sentence is the one continuation both are scored on.
    let continuation = format!("{DELIMITER}{}", s[idx + 1..].trim());
    let requests: Vec<Request> = opts
        .iter()
        .map(|o| Request { context: format!("{}{o}", &s[..idx]), continuation: continuation.clone() })
        .collect();
    let lens = requests.iter().map(|r| r.context.chars().count()).collect();
    Ok((gold, requests, lens))
}

fn lambada(doc: &Value, bad: Bad) -> Result<Parsed, GdaError> {
    let text = string(doc, "text", bad)?;
    // lm-eval: context = text.split(' ')[:-1] joined by ' ', target = ' ' + the last piece.
    let (context, last) =
        text.rsplit_once(' ').ok_or_else(|| bad("text", "one word only; the last word needs a context".into()))?;
    if last.is_empty() {
        return Err(bad("text", "ends with a space: the last word is empty".into()));
    }
    let r = Request { context: context.to_string(), continuation: format!(" {last}") };
    Ok((0, vec![r], vec![last.chars().count()]))
}

fn generic(doc: &Value, bad: Bad) -> Result<Parsed, GdaError> {
    let context = string(doc, "context", bad)?;
    let choices = strings(doc.get("choices"), "choices", bad)?;
    if choices.len() < 2 {
        return Err(bad("choices", format!("{} choices; allowed: at least 2", choices.len())));
    }
    let gold = match doc.get("gold") {
        Some(Value::Number(_)) => index(doc, "gold", choices.len(), bad)?,
        Some(other) => return Err(bad("gold", format!("{other}; allowed: an integer index into choices"))),
        None => return Err(bad("gold", "missing".into())),
    };
    Ok((gold, choice_requests(context, &choices), chars(&choices)))
}

/// Token ids of a request as lm-eval's `_encode_pair` makes them for a
/// causal model: trailing whitespace of the context moves to the front of
/// the continuation; the context and the whole string are encoded, and the
/// continuation is the whole string's ids past the context's length.
pub fn encode_pair(tok: &Tokenizer, r: &Request) -> (Vec<u32>, Vec<u32>) {
    let context = r.context.trim_end();
    let continuation = format!("{}{}", &r.context[context.len()..], r.continuation);
    let whole = tok.encode(format!("{context}{continuation}").as_bytes());
    let ctx = tok.encode(context.as_bytes());
    let cont = whole.get(ctx.len()..).unwrap_or_default().to_vec();
    (ctx, cont)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_matches_lm_eval_rules() {
        assert_eq!(hellaswag_preprocess("  a [title] b  "), "a. b");
        assert_eq!(hellaswag_preprocess("x [step] y [header]z"), "x y z");
        // `.` does not match a newline: a bracket left open stays.
        assert_eq!(hellaswag_preprocess("a [b\nc] d"), "a [b\nc] d");
        assert_eq!(hellaswag_preprocess("a   b"), "a  b");
        assert_eq!(capitalize("then The MAN"), "Then the man");
        assert_eq!(capitalize("élan Vital"), "Élan vital");
    }
}
