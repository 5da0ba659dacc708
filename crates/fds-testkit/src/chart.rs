//! What the test kit's PNG charts share (the soak's timeline, the bench's plots): the font
//! their text is drawn with.

use anyhow::Context as _;
use plotters::style::FontStyle;

/// The TrueType font the charts' text is drawn with (Debian: `fonts-dejavu-core`).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers [`FONT`] as plotters' `sans-serif` (once per process).
pub fn register_font() -> anyhow::Result<()> {
    static FONT_BYTES: std::sync::OnceLock<&'static [u8]> = std::sync::OnceLock::new();
    if FONT_BYTES.get().is_some() {
        return Ok(());
    }
    let bytes = std::fs::read(FONT)
        .with_context(|| format!("reading {FONT} (apt-get install -y fonts-dejavu-core)"))?;
    let bytes: &'static [u8] = FONT_BYTES.get_or_init(|| Box::leak(bytes.into_boxed_slice()));
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{FONT} is not a font plotters can read"))?;
    Ok(())
}
