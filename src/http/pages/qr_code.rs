//! The QR code of an `otpauth://` URI, drawn as an inline `<svg>` for the TOTP enrolment
//! page. No `data:` URL (the pages' policy, `default-src 'self'`, refuses one as an image)
//! and no `style` attribute (refused as inline style): presentation attributes only, so the
//! Content-Security-Policy holds. The `qrcode` crate encodes; the drawing is ours, so the
//! markup is exactly what a page needs: a text alternative and no XML prolog.

use std::fmt::Write as _;

use qrcode::{Color, EcLevel, QrCode};

use crate::html::escape;
use crate::http::error::ApiError;

/// The light margin around the code, in modules: the four the QR standard asks for, so a
/// scanner finds the code's edge whatever surrounds it.
pub const QUIET_ZONE_MODULES: usize = 4;

/// The natural size of one module in CSS pixels; the stylesheet may scale the whole code.
const MODULE_PIXELS: usize = 5;

/// An inline `<svg>` showing `text` as a QR code (error correction level M, which a phone
/// camera reads off a screen at a glance), named by `text_alternative` for screen readers
/// (`role="img"`, `aria-label` and `<title>`). Each row's run of dark modules is one
/// rectangle of one `<path>`, black on an explicit white square with the quiet zone, so a
/// dark theme cannot invert it. Text too long for any QR code is an internal error: an
/// `otpauth://` URI is far shorter.
pub fn qr_code_svg(text: &str, text_alternative: &str) -> Result<String, ApiError> {
    let code =
        QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|error| {
            ApiError::Internal(format!("no QR code for {} bytes: {error}", text.len()))
        })?;
    let width = code.width();
    let side = width + 2 * QUIET_ZONE_MODULES;
    let pixels = side * MODULE_PIXELS;
    let label = escape(text_alternative);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"qr-code\" viewBox=\"0 0 {side} {side}\" \
         width=\"{pixels}\" height=\"{pixels}\" role=\"img\" aria-label=\"{label}\" \
         shape-rendering=\"crispEdges\"><title>{label}</title>\
         <rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/><path fill=\"#000\" d=\""
    );
    let colors = code.to_colors();
    for (row, modules) in colors.chunks(width).enumerate() {
        let mut column = 0;
        while column < width {
            if modules[column] == Color::Light {
                column += 1;
                continue;
            }
            let run = modules[column..]
                .iter()
                .take_while(|color| **color == Color::Dark)
                .count();
            let _ = write!(
                svg,
                "M{} {}h{run}v1h-{run}z",
                column + QUIET_ZONE_MODULES,
                row + QUIET_ZONE_MODULES
            );
            column += run;
        }
    }
    svg.push_str("\"/></svg>");
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::{QUIET_ZONE_MODULES, qr_code_svg};

    const URI: &str = "otpauth://totp/Latchkey:ada%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Latchkey&algorithm=SHA1&digits=6&period=30";

    /// The dark modules the path draws, as (column, row) in the code's own grid.
    fn dark_modules(svg: &str) -> Vec<(usize, usize)> {
        let path = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let mut modules = Vec::new();
        for rectangle in path.split('M').skip(1) {
            let (position, rest) = rectangle.split_once('h').unwrap();
            let (x, y) = position.split_once(' ').unwrap();
            let run: usize = rest.split_once('v').unwrap().0.parse().unwrap();
            assert_eq!(rest, format!("{run}v1h-{run}z"), "{rectangle}");
            let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
            for column in x..x + run {
                modules.push((column - QUIET_ZONE_MODULES, y - QUIET_ZONE_MODULES));
            }
        }
        modules
    }

    #[test]
    fn the_svg_draws_exactly_the_dark_modules_inside_the_quiet_zone() {
        let svg = qr_code_svg(URI, "QR code").unwrap();
        let code = qrcode::QrCode::with_error_correction_level(URI.as_bytes(), qrcode::EcLevel::M)
            .unwrap();
        let width = code.width();
        let expected: Vec<(usize, usize)> = (0..width)
            .flat_map(|row| (0..width).map(move |column| (column, row)))
            .filter(|(column, row)| code[(*column, *row)] == qrcode::Color::Dark)
            .collect();
        let mut drawn = dark_modules(&svg);
        drawn.sort_by_key(|(column, row)| (*row, *column));
        assert_eq!(drawn, expected);
        let side = width + 2 * QUIET_ZONE_MODULES;
        assert!(
            svg.contains(&format!("viewBox=\"0 0 {side} {side}\"")),
            "{svg}"
        );
        assert!(
            svg.contains(&format!(
                "<rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/>"
            )),
            "{svg}"
        );
    }

    #[test]
    fn the_svg_is_inline_markup_the_pages_policy_allows_with_a_text_alternative() {
        let svg = qr_code_svg(URI, "Scan this with your app").unwrap();
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" "),
            "{svg}"
        );
        assert!(svg.ends_with("\"/></svg>"), "{svg}");
        assert!(svg.contains(" role=\"img\" aria-label=\"Scan this with your app\""));
        assert!(svg.contains("<title>Scan this with your app</title>"));
        // Nothing a `default-src 'self'` policy refuses: no inline style, no URL at all.
        for refused in ["style", "data:", "href", "<?xml", "<script", "url("] {
            assert!(!svg.contains(refused), "{refused} in {svg}");
        }
        // The URI itself is not in the markup: only its modules are.
        assert!(!svg.contains("otpauth"));
    }

    #[test]
    fn the_text_alternative_is_escaped() {
        let svg = qr_code_svg(URI, "Tom & \"Jerry\" <app>").unwrap();
        assert!(svg.contains("aria-label=\"Tom &amp; &quot;Jerry&quot; &lt;app&gt;\""));
        assert!(svg.contains("<title>Tom &amp; &quot;Jerry&quot; &lt;app&gt;</title>"));
    }

    #[test]
    fn text_too_long_for_any_qr_code_is_an_error_not_a_panic() {
        let too_long = "x".repeat(8_000);
        assert!(qr_code_svg(&too_long, "QR code").is_err());
    }
}
