//! Plain-text tables and the value formats in them.

use std::io::Write;

use super::error::ClientError;

pub enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell; the last column isn't padded, so long free text
/// (a task's error) doesn't drag trailing blanks.
pub fn render(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|(h, _)| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, ((cell, (_, align)), w)) in row.iter().zip(headers).zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = w.saturating_sub(cell.chars().count());
            match align {
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                Align::Left if i == last => line.push_str(cell),
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Prints the API's objects as a table, one row each.
pub fn print_rows(
    headers: &[(&str, Align)],
    items: &[serde_json::Value],
    row: impl Fn(&serde_json::Value) -> Vec<String>,
) -> Result<(), ClientError> {
    print(&render(headers, &items.iter().map(row).collect::<Vec<_>>()))
}

/// A text field of an API object, `-` when it has none.
pub fn field(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or("-").to_owned()
}

pub fn print(text: &str) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(ClientError::Output)
}

/// Local time of a Unix timestamp.
pub fn local_time(epoch: u64) -> String {
    i64::try_from(epoch)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| epoch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = render(
            &[
                ("VOLID", Align::Left),
                ("SIZE", Align::Right),
                ("FORMAT", Align::Left),
            ],
            &[
                vec!["local:iso/a.iso".into(), "1.0 MiB".into(), "iso".into()],
                vec!["b:iso/b.img".into(), "12 B".into(), "img".into()],
            ],
        );
        assert_eq!(
            t,
            "VOLID               SIZE  FORMAT\n\
             local:iso/a.iso  1.0 MiB  iso\n\
             b:iso/b.img         12 B  img\n"
        );
    }
}
