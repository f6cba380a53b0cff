//! Every citation of `docs/THEORY.md` in the code must point to something that exists there.
//!
//! The scan covers every `.rs` file under `crates/`, `src/`, `tests/` and `benches/` (this file
//! excepted: its unit tests contain deliberately broken citations). Recognized citations:
//!
//! | form in the code | must exist in `docs/THEORY.md` |
//! |---|---|
//! | `§4`, `§1–3`; `section 6`, `sections 2, 4 and 5` on a line that mentions THEORY | a heading `## §4. …` |
//! | `Section 5.2` (capital S: the paper's numbering) | a heading containing `Section 5.2` |
//! | `(13)`, `(9)–(12)` (a number in parentheses, anywhere) | a line of a `math` code block ending in `(13)`, or a `$$…(13)$$` line |
//! | `Theorem 2`, `Theorems 5–7` | a line starting `**Theorem 2` |
//! | `Corollary 1` | a line starting `**Corollary 1` |
//! | `THEORY.md notation` | a heading `## Notation` |
//! | `\[Kingma2015\]` (escaped, as rustdoc needs) or `[Kingma2015]` | an entry `- [Kingma2015] …` under `## References` |
//!
//! A failure lists `file:line` and the citation for every one that does not resolve.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// One citation found in the code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Citation {
    /// `§N` / `section N` of THEORY.md (`"4"`, or `"6.1"` for a numbered subsection).
    Section(String),
    /// `Section N.M` of the source paper, named in THEORY.md's headings.
    PaperSection(String),
    /// Equation `(N)`.
    Equation(u32),
    /// `Theorem N`.
    Theorem(u32),
    /// `Corollary N`.
    Corollary(u32),
    /// `THEORY.md notation`.
    Notation,
    /// Reference key `[Key]`.
    Reference(String),
}

impl fmt::Display for Citation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Citation::Section(s) => write!(f, "§{s}"),
            Citation::PaperSection(s) => write!(f, "paper Section {s}"),
            Citation::Equation(n) => write!(f, "equation ({n})"),
            Citation::Theorem(n) => write!(f, "Theorem {n}"),
            Citation::Corollary(n) => write!(f, "Corollary {n}"),
            Citation::Notation => write!(f, "the Notation section"),
            Citation::Reference(k) => write!(f, "reference [{k}]"),
        }
    }
}

/// What `docs/THEORY.md` provides.
#[derive(Debug, Default)]
struct Theory {
    sections: BTreeSet<String>,
    paper_sections: BTreeSet<String>,
    equations: BTreeSet<u32>,
    theorems: BTreeSet<u32>,
    corollaries: BTreeSet<u32>,
    notation: bool,
    references: BTreeSet<String>,
    /// Equation labels, theorems and corollaries defined more than once, and reference keys
    /// listed twice.
    duplicates: Vec<String>,
}

impl Theory {
    fn parse(text: &str) -> Theory {
        let mut t = Theory::default();
        let mut in_references = false;
        // inside a fenced block (Some(true) for a `math` block)
        let mut fence: Option<bool> = None;
        for line in text.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") {
                fence = match fence {
                    Some(_) => None,
                    None => Some(trimmed.trim_end() == "```math"),
                };
                continue;
            }
            if let Some(math) = fence {
                if math && let Some(n) = trailing_label(trimmed.trim_end()) {
                    t.add_equation(n);
                }
                continue;
            }
            if trimmed.starts_with('#') {
                let heading = trimmed.trim_start_matches('#').trim();
                in_references = heading == "References";
                if heading == "Notation" {
                    t.notation = true;
                }
                let chars: Vec<char> = heading.chars().collect();
                for (i, c) in chars.iter().enumerate() {
                    if *c == '§'
                        && let Some((s, _)) = dotted_number(&chars, i + 1)
                    {
                        t.sections.insert(s);
                    }
                }
                for i in word_starts(&chars, "Section") {
                    let mut j = i + "Section".len();
                    if chars.get(j) == Some(&'s') {
                        j += 1;
                    }
                    if let Some((s, _)) = dotted_number(&chars, skip_spaces(&chars, j)) {
                        t.paper_sections.insert(s);
                    }
                }
                continue;
            }
            for (kind, set) in [
                ("**Theorem ", &mut t.theorems),
                ("**Corollary ", &mut t.corollaries),
            ] {
                if let Some(rest) = trimmed.strip_prefix(kind) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(n) = digits.parse()
                        && !set.insert(n)
                    {
                        t.duplicates.push(format!("{}{n}", &kind[2..]));
                    }
                }
            }
            if let Some(body) = trimmed.trim_end().strip_suffix("$$")
                && body.starts_with("$$")
                && let Some(n) = trailing_label(body.trim_end())
            {
                t.add_equation(n);
            }
            if in_references
                && let Some(rest) = trimmed.strip_prefix("- [")
                && let Some(end) = rest.find(']')
            {
                let key = rest[..end].to_string();
                if !t.references.insert(key.clone()) {
                    t.duplicates.push(format!("reference [{key}]"));
                }
            }
        }
        t
    }

    fn add_equation(&mut self, n: u32) {
        if !self.equations.insert(n) {
            self.duplicates.push(format!("equation ({n})"));
        }
    }

    fn resolves(&self, c: &Citation) -> bool {
        match c {
            Citation::Section(s) => self.sections.contains(s),
            Citation::PaperSection(s) => self.paper_sections.contains(s),
            Citation::Equation(n) => self.equations.contains(n),
            Citation::Theorem(n) => self.theorems.contains(n),
            Citation::Corollary(n) => self.corollaries.contains(n),
            Citation::Notation => self.notation,
            Citation::Reference(k) => self.references.contains(k),
        }
    }
}

/// The label `N` of a formula line ending in `(N)`.
fn trailing_label(line: &str) -> Option<u32> {
    let inner = line.strip_suffix(')')?;
    let open = inner.rfind('(')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Positions where `word` starts in `chars` as a whole word (not preceded by a letter or digit).
fn word_starts(chars: &[char], word: &str) -> Vec<usize> {
    let w: Vec<char> = word.chars().collect();
    (0..chars.len())
        .filter(|&i| chars[i..].starts_with(&w) && (i == 0 || !chars[i - 1].is_alphanumeric()))
        .collect()
}

fn skip_spaces(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i] == ' ' {
        i += 1;
    }
    i
}

/// An unsigned integer starting at `i`: its value and the index after it.
fn number(chars: &[char], i: usize) -> Option<(u32, usize)> {
    let mut j = i;
    while j < chars.len() && chars[j].is_ascii_digit() {
        j += 1;
    }
    if j == i || j - i > 4 {
        return None;
    }
    let n = chars[i..j].iter().collect::<String>().parse().ok()?;
    Some((n, j))
}

/// `N` or `N.M` (a trailing full stop is not part of it): the text and the index after it.
fn dotted_number(chars: &[char], i: usize) -> Option<(String, usize)> {
    let (_, mut j) = number(chars, i)?;
    while chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
        j = number(chars, j + 1)?.1;
    }
    Some((chars[i..j].iter().collect(), j))
}

/// A list of numbers starting at `i`: `5`, `5–7`, `5-7`, `2, 4 and 5`, `5 + 6`. `None` when the
/// first number is followed by `.digit` (a dotted number such as a reference's `Theorem 7.5`).
fn number_list(chars: &[char], i: usize) -> Option<Vec<u32>> {
    let (first, mut j) = number(chars, i)?;
    if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
        return None;
    }
    let mut out = vec![first];
    loop {
        let rest: String = chars[j..chars.len().min(j + 6)].iter().collect();
        let (sep_len, range) = if rest.starts_with('–') || rest.starts_with('-') {
            (1, true)
        } else if rest.starts_with(", and ") {
            (6, false)
        } else if rest.starts_with(" and ") {
            (5, false)
        } else if rest.starts_with(" + ") {
            (3, false)
        } else if rest.starts_with(", ") {
            (2, false)
        } else {
            break;
        };
        let Some((n, k)) = number(chars, j + sep_len) else {
            break;
        };
        if range {
            let last = *out.last().unwrap_or(&n);
            if n > last && n - last <= 50 {
                out.extend(last + 1..=n);
            } else {
                out.push(n);
            }
        } else {
            out.push(n);
        }
        j = k;
    }
    Some(out)
}

/// Every citation on one line of code, in order of kind.
fn extract(line: &str) -> Vec<Citation> {
    let chars: Vec<char> = line.chars().collect();
    let mentions_theory = line.contains("THEORY");
    let mut out = Vec::new();

    // §N, §N–M, §N.M
    for (i, c) in chars.iter().enumerate() {
        if *c != '§' {
            continue;
        }
        let at = skip_spaces(&chars, i + 1);
        if let Some((s, _)) = dotted_number(&chars, at) {
            if s.contains('.') {
                out.push(Citation::Section(s));
            } else if let Some(list) = number_list(&chars, at) {
                out.extend(list.into_iter().map(|n| Citation::Section(n.to_string())));
            }
        }
    }
    // section N / sections N, M and K: THEORY.md's numbering, only next to a THEORY mention
    if mentions_theory {
        for i in word_starts(&chars, "section") {
            let mut j = i + "section".len();
            if chars.get(j) == Some(&'s') {
                j += 1;
            }
            if chars.get(j) != Some(&' ') {
                continue;
            }
            if let Some(list) = number_list(&chars, skip_spaces(&chars, j)) {
                out.extend(list.into_iter().map(|n| Citation::Section(n.to_string())));
            }
        }
        let lower = line.to_lowercase();
        if let Some(at) = lower.find("theory")
            && lower[at..].contains("notation")
        {
            out.push(Citation::Notation);
        }
    }
    // Section N.M: the paper's numbering
    for i in word_starts(&chars, "Section") {
        let mut j = i + "Section".len();
        if chars.get(j) == Some(&'s') {
            j += 1;
        }
        if chars.get(j) != Some(&' ') {
            continue;
        }
        if let Some((s, _)) = dotted_number(&chars, skip_spaces(&chars, j)) {
            out.push(Citation::PaperSection(s));
        }
    }
    // Theorem(s) N…, Corollary N…
    for (word, make) in [
        ("Theorem", Citation::Theorem as fn(u32) -> Citation),
        ("Corollar", Citation::Corollary as fn(u32) -> Citation),
    ] {
        for i in word_starts(&chars, word) {
            let mut j = i + word.len();
            while j < chars.len() && chars[j].is_alphabetic() {
                j += 1; // Theorems, Corollary, Corollaries
            }
            if chars.get(j) != Some(&' ') {
                continue;
            }
            if let Some(list) = number_list(&chars, skip_spaces(&chars, j)) {
                out.extend(list.into_iter().map(make));
            }
        }
    }
    // (N) and (N)–(M)
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '('
            && (i == 0 || chars[i - 1].is_whitespace() || "(–-/,;\"`".contains(chars[i - 1]))
            && let Some((n, end)) = number(&chars, i + 1)
            && chars.get(end) == Some(&')')
            && !chars
                .get(end + 1)
                .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            let mut next = end + 1;
            if n > 0 {
                out.push(Citation::Equation(n));
                // a range (N)–(M)
                if matches!(chars.get(next), Some('–') | Some('-'))
                    && chars.get(next + 1) == Some(&'(')
                    && let Some((m, e2)) = number(&chars, next + 2)
                    && chars.get(e2) == Some(&')')
                {
                    if m > n && m - n <= 50 {
                        out.extend((n + 1..=m).map(Citation::Equation));
                    } else {
                        out.push(Citation::Equation(m));
                    }
                    next = e2 + 1;
                }
            }
            i = next;
            continue;
        }
        i += 1;
    }
    // [Key] and \[Key\]
    let mut i = 0;
    while i < chars.len() {
        let escaped = chars[i] == '\\' && chars.get(i + 1) == Some(&'[');
        let start = if escaped { i + 2 } else { i + 1 };
        if escaped || chars[i] == '[' {
            let mut j = start;
            while j < chars.len() && chars[j].is_ascii_alphanumeric() {
                j += 1;
            }
            let key: String = chars[start..j].iter().collect();
            let closed = if escaped {
                chars.get(j) == Some(&'\\') && chars.get(j + 1) == Some(&']')
            } else {
                chars.get(j) == Some(&']')
            };
            if closed && (escaped && !key.is_empty() || !escaped && is_author_year(&key)) {
                out.push(Citation::Reference(key));
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// `Kingma2015`, `VanDerSluis1969`, `Reddi2018a`: a capitalized name followed by a year.
fn is_author_year(key: &str) -> bool {
    let k: Vec<char> = key.chars().collect();
    let name = k.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let year = k[name..].iter().take_while(|c| c.is_ascii_digit()).count();
    let suffix = k.len() - name - year;
    name >= 2
        && k[0].is_ascii_uppercase()
        && year == 4
        && (suffix == 0 || suffix == 1 && k[k.len() - 1].is_ascii_lowercase())
}

/// Unresolved citations of `source` as `(line number, citation)`.
fn unresolved(theory: &Theory, source: &str) -> Vec<(usize, Citation)> {
    source
        .lines()
        .enumerate()
        .flat_map(|(i, line)| extract(line).into_iter().map(move |c| (i + 1, c)))
        .filter(|(_, c)| !theory.resolves(c))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_theory() -> Theory {
    let path = root().join("docs").join("THEORY.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Theory::parse(&text)
}

#[test]
fn every_theory_citation_in_the_code_resolves() {
    let theory = load_theory();
    let root = root();
    let mut files = Vec::new();
    for dir in ["crates", "src", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let this_file = root.join(file!());
    let mut failures = Vec::new();
    let mut found = std::collections::HashSet::new();
    let mut count = 0usize;
    for path in files.iter().filter(|p| **p != this_file) {
        let source = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for (i, line) in source.lines().enumerate() {
            for c in extract(line) {
                count += 1;
                found.insert(std::mem::discriminant(&c));
                if !theory.resolves(&c) {
                    let rel = path.strip_prefix(&root).unwrap_or(path);
                    failures.push(format!(
                        "{}:{}: cites {c}, which docs/THEORY.md does not contain",
                        rel.display(),
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} unresolved citation(s) of docs/THEORY.md:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // the scan is not vacuous: every kind of citation occurs in the code
    let kinds = [
        Citation::Section(String::new()),
        Citation::PaperSection(String::new()),
        Citation::Equation(0),
        Citation::Theorem(0),
        Citation::Corollary(0),
        Citation::Notation,
        Citation::Reference(String::new()),
    ];
    for k in &kinds {
        assert!(
            found.contains(&std::mem::discriminant(k)),
            "no citation of kind {k:?} found in {} files: is the scanner broken?",
            files.len()
        );
    }
    assert!(count > 200, "only {count} citations found");
}

#[test]
fn theory_labels_are_unique_and_complete() {
    let theory = load_theory();
    assert!(
        theory.duplicates.is_empty(),
        "defined twice in docs/THEORY.md: {:?}",
        theory.duplicates
    );
    // the paper's numbering, without gaps
    assert_eq!(theory.equations, (1..=32).collect::<BTreeSet<u32>>());
    assert_eq!(theory.theorems, (1..=7).collect::<BTreeSet<u32>>());
    assert_eq!(theory.corollaries, BTreeSet::from([1]));
    let sections: BTreeSet<String> = (1..=8).map(|n| n.to_string()).collect();
    assert_eq!(theory.sections, sections);
    for s in ["2", "3.1", "3.2", "4", "5", "5.1", "5.2", "5.3"] {
        assert!(theory.paper_sections.contains(s), "paper Section {s}");
    }
    assert!(theory.notation);
    for key in [
        "PrecondPaper",
        "Kingma2015",
        "Duchi2011",
        "Tieleman2012",
        "Loshchilov2019",
        "Ioffe2015",
        "Ba2016",
        "VanDerSluis1969",
        "Polyak1964",
        "Reddi2018",
        "Hager1984",
        "Higham1988",
        "Lange2022",
        "Gupta2018",
        "Jordan2024",
        "Vyas2024",
        "Parikh2014",
    ] {
        assert!(theory.references.contains(key), "reference [{key}]");
    }
}

const SMALL_THEORY: &str = "\
# Title
## Notation
## §1. First (paper Section 2)
```math
x = y \\qquad (1)
```
**Theorem 1 (name).** Text.
## §2. Second (paper Section 3.1)
$$a = b, \\qquad c = d. \\qquad (2)$$
**Corollary 1.** Text.
## References
- [Kingma2015] D. P. Kingma, J. Ba. Adam.
";

#[test]
fn extractor_finds_every_form() {
    let line = "/// THEORY.md §1–2 and sections 1, 2 and 5, Section 3.1, (1)–(2), Theorems 1–2 \
                and Corollary 1; THEORY.md notation; \\[Kingma2015\\] [Polyak1964]";
    let c = extract(line);
    let expect = vec![
        Citation::Section("1".into()),
        Citation::Section("2".into()),
        Citation::Section("1".into()),
        Citation::Section("2".into()),
        Citation::Section("5".into()),
        Citation::Notation,
        Citation::PaperSection("3.1".into()),
        Citation::Theorem(1),
        Citation::Theorem(2),
        Citation::Corollary(1),
        Citation::Equation(1),
        Citation::Equation(2),
        Citation::Reference("Kingma2015".into()),
        Citation::Reference("Polyak1964".into()),
    ];
    assert_eq!(c, expect);
    // not citations: lowercase "section" without a THEORY mention, (0), calls, intra-doc links
    assert!(
        extract("// critical section 3 of f(2), PRECOND_ROW_MAJOR (0), [Mlp], [`Mlp`]").is_empty()
    );
    // a dotted theorem number is another document's
    assert!(extract("see Higham, Theorem 7.5").is_empty());
}

#[test]
fn resolver_reports_missing_numbers() {
    let theory = Theory::parse(SMALL_THEORY);
    assert!(theory.duplicates.is_empty());
    let ok = "/// THEORY.md §1, §2, section 2, Section 3.1, (1), (2), Theorem 1, Corollary 1, \
              notation, \\[Kingma2015\\]";
    assert_eq!(unresolved(&theory, ok), vec![]);
    let bad = "fn f() {}\n\
               /// THEORY.md §3 and (7); Theorem 2, Corollary 2, Section 5.2, \\[Adam2014\\]\n\
               // (1) and Theorem 1 resolve";
    assert_eq!(
        unresolved(&theory, bad),
        vec![
            (2, Citation::Section("3".into())),
            (2, Citation::PaperSection("5.2".into())),
            (2, Citation::Theorem(2)),
            (2, Citation::Corollary(2)),
            (2, Citation::Equation(7)),
            (2, Citation::Reference("Adam2014".into())),
        ]
    );
    // a theory without a Notation heading does not resolve a notation citation
    let no_notation = Theory::parse(&SMALL_THEORY.replace("## Notation\n", ""));
    assert_eq!(
        unresolved(&no_notation, "// THEORY.md notation"),
        vec![(1, Citation::Notation)]
    );
}

#[test]
fn parser_reports_duplicate_labels() {
    let twice = format!("{SMALL_THEORY}```math\nz \\qquad (2)\n```\n**Theorem 1.** again\n");
    let theory = Theory::parse(&twice);
    assert_eq!(
        theory.duplicates,
        vec!["equation (2)".to_string(), "Theorem 1".to_string()]
    );
}
