//! The CLI's text tables: no borders, columns two spaces apart, no trailing spaces — easy to
//! read and to `awk`. Rendered by `comfy-table`.

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, Table};

/// Spaces between two columns.
const GAP: u16 = 2;

/// Renders `header` and `rows` as aligned columns, one line each (`\n`-terminated). Columns
/// listed in `right_aligned` (numbers) are right-aligned, the others left-aligned.
pub fn render<const N: usize>(
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
    right_aligned: &[usize],
) -> String {
    let mut table = Table::new();
    table.load_style(NOTHING).set_header(header).add_rows(rows);
    for (index, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, GAP));
        if right_aligned.contains(&index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = table.trim_fmt();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_two_spaces_apart_without_trailing_spaces() {
        let rows = [
            ["a".to_owned(), "1".to_owned(), "x".to_owned()],
            ["long-name".to_owned(), "12345".to_owned(), String::new()],
        ];
        assert_eq!(
            render(["NAME", "N", "NOTE"], rows, &[1]),
            "NAME           N  NOTE\n\
             a              1  x\n\
             long-name  12345\n"
        );
    }
}
