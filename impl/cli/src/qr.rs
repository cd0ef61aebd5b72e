//! The contact card as a terminal QR code (CARD-2): unicode half blocks, two modules per
//! character cell, dark on light with the quiet zone, so a phone camera reads it from the screen.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

/// The QR code of `text` as lines of unicode half blocks.
pub fn render(text: &str) -> Result<String, qrcode::types::QrError> {
    // Level L keeps a ~500-character card at a size a terminal shows whole.
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_card_sized_text_renders_as_half_blocks() {
        let text = format!("sotto:{}", "a".repeat(400));
        let code = super::render(&text).expect("fits a QR code");
        assert!(code.lines().count() > 20);
        assert!(code.contains('▀') || code.contains('▄') || code.contains('█'));
    }
}
