//! The report page: one XHTML-compatible, self-contained HTML document (inline CSS, inline SVG),
//! readable from a file without a server.

use std::fmt::Write as _;

use super::{Cell, Report, fmt_num, render_svg};
use crate::error::CliError;

/// Escapes text for XML/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2.2em}
.meta{color:#666}.claim{background:#f3f6fb;border-left:4px solid #3b6fb6;padding:.6em 1em;margin:1em 0}
.theory{color:#555;font-size:.9em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f5f5f5;text-align:center}td.t{text-align:left}caption{text-align:left;font-weight:600;padding:.3em 0}
.holds{color:#fff;background:#2e7d32;padding:.1em .5em;border-radius:.3em;font-weight:600}
.fails{color:#fff;background:#c62828;padding:.1em .5em;border-radius:.3em;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots svg{border:1px solid #eee;max-width:100%;height:auto}
.ok{color:#2e7d32}.no{color:#c62828}
"#;

/// A script the page runs on load: it measures every plot and records on `<html>` how many
/// plots there are (`data-plots`), how many rendered with a non-zero size
/// (`data-plots-rendered`) and how many script errors occurred (`data-errors`), and logs a
/// console error for an empty plot. The headless-browser test reads these attributes.
const SELF_CHECK: &str = r#"<script>//<![CDATA[
(function(){var errs=0;window.addEventListener('error',function(){errs++;});
function check(){var s=document.querySelectorAll('.plots svg'),ok=0;
for(var i=0;i<s.length;i++){var r=s[i].getBoundingClientRect();
if(r.width>0&&r.height>0){ok++;}else{console.error('plot '+i+' rendered with zero size');}}
var d=document.documentElement;d.setAttribute('data-plots',String(s.length));
d.setAttribute('data-plots-rendered',String(ok));d.setAttribute('data-errors',String(errs));}
if(document.readyState==='complete'){check();}else{window.addEventListener('load',check);}})();
//]]></script>
"#;

fn cell(c: &Cell) -> String {
    match c {
        Cell::Num(v) => format!("<td>{}</td>", escape(&fmt_num(*v))),
        Cell::Text(t) => format!("<td class=\"t\">{}</td>", escape(t)),
    }
}

fn badge(holds: bool) -> &'static str {
    if holds {
        "<span class=\"holds\">holds</span>"
    } else {
        "<span class=\"fails\">does not hold</span>"
    }
}

/// Renders the report page.
///
/// # Errors
/// [`CliError::Experiment`] if a plot fails to render.
pub fn render_html(r: &Report) -> Result<String, CliError> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>precond report: preconditioning, measured</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
    );
    let _ = write!(
        h,
        "<h1>precond report</h1>\n<p class=\"meta\">Adaptive learning rates, regularization and normalization \
         as improvements of the Hessian's condition number (THEORY.md), reproduced with the precond library. \
         precond {} · seed {} · {} run · {} s · <strong>{} of {} claims hold</strong></p>\n",
        escape(&r.version),
        r.seed,
        if r.quick { "quick" } else { "full" },
        escape(&fmt_num((r.seconds * 10.0).round() / 10.0)),
        r.holds,
        r.experiments.len()
    );
    h.push_str("<table>\n<caption>Summary</caption>\n<tr><th>#</th><th>experiment</th><th>theory</th><th>verdict</th><th>smallest margin</th></tr>\n");
    for e in &r.experiments {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"t\"><a href=\"#{}\">{}</a></td><td class=\"t\">{}</td><td class=\"t\">{}</td><td>{}</td></tr>",
            e.number,
            escape(&e.id),
            escape(&e.title),
            escape(&e.theory),
            badge(e.holds()),
            escape(&fmt_num(e.margin))
        );
    }
    h.push_str("</table>\n");
    for e in &r.experiments {
        let _ = write!(
            h,
            "<section id=\"{}\">\n<h2>{}. {} {}</h2>\n<p class=\"theory\">{}</p>\n<div class=\"claim\"><strong>Claim.</strong> {}</div>\n",
            escape(&e.id),
            e.number,
            escape(&e.title),
            badge(e.holds()),
            escape(&e.theory),
            escape(&e.claim)
        );
        let _ = writeln!(
            h,
            "<p><strong>Setup.</strong> {}</p>",
            escape(&e.evidence.setup)
        );
        if !e.evidence.plots.is_empty() {
            h.push_str("<div class=\"plots\">\n");
            for p in &e.evidence.plots {
                h.push_str(&render_svg(p, 520, 380)?);
                h.push('\n');
            }
            h.push_str("</div>\n");
        }
        for t in &e.evidence.tables {
            let _ = write!(h, "<table>\n<caption>{}</caption>\n<tr>", escape(&t.title));
            for c in &t.columns {
                let _ = write!(h, "<th>{}</th>", escape(c));
            }
            h.push_str("</tr>\n");
            for row in &t.rows {
                h.push_str("<tr>");
                for c in row {
                    h.push_str(&cell(c));
                }
                h.push_str("</tr>\n");
            }
            h.push_str("</table>\n");
        }
        h.push_str("<table>\n<caption>Verdict: every check must hold</caption>\n<tr><th>check</th><th>value</th><th>relation</th><th>bound</th><th>margin</th><th>holds</th></tr>\n");
        for c in &e.evidence.checks {
            let rel = match c.relation {
                super::Relation::Le => "≤",
                super::Relation::Ge => "≥",
            };
            let _ = writeln!(
                h,
                "<tr><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                escape(&c.what),
                escape(&fmt_num(c.value)),
                rel,
                escape(&fmt_num(c.bound)),
                escape(&fmt_num(c.margin)),
                if c.holds { "ok" } else { "no" },
                if c.holds { "yes" } else { "no" }
            );
        }
        let _ = write!(
            h,
            "</table>\n<p>Verdict: {} (smallest relative margin {}; {} s)</p>\n</section>\n",
            badge(e.holds()),
            escape(&fmt_num(e.margin)),
            escape(&fmt_num((e.seconds * 100.0).round() / 100.0))
        );
    }
    h.push_str("<p class=\"meta\">Generated by <code>precond report</code>; every number on this page is in results.json beside it.</p>\n");
    h.push_str(SELF_CHECK);
    h.push_str("</body>\n</html>\n");
    Ok(h)
}
