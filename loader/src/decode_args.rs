//! The command-line options that choose how images are decoded, shared by a run, `bench`,
//! `profile` and `preview` (`augment` has `--decoder`): `--decoder zune|turbo`, `--full-decode`
//! and the inexact opt-in `--dct-scale`.

use decode::Decoder;
use views::sample::DecodeOptions;

/// Which JPEG decoder, and whether to decode only what the views need.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DecodeArgs {
    /// JPEG decoder: `turbo` (libjpeg-turbo, what Pillow uses: the official pipeline's pixels
    /// byte for byte) or `zune` (zune-jpeg, pure Rust; a few levels off Pillow's pixels).
    #[arg(long, default_value_t = Decoder::default(), value_parser = parse_decoder)]
    pub decoder: Decoder,
    /// Decode whole images. By default `turbo` decodes only the union of each sample's crops
    /// (same bytes, less work); this turns that off (for measuring it).
    #[arg(long)]
    pub full_decode: bool,
    /// NOT EXACT, for images much larger than their crops: with `turbo`, decode at 1/2, 1/4 or
    /// 1/8 scale (libjpeg's DCT scaling) when every crop is still at least its view's size there.
    /// The views are then no longer the official pipeline's bytes.
    #[arg(long)]
    pub dct_scale: bool,
}

fn parse_decoder(s: &str) -> Result<Decoder, String> {
    s.parse()
}

impl DecodeArgs {
    /// What a [`views::sample::SampleMaker`] is made with.
    pub fn options(&self) -> DecodeOptions {
        DecodeOptions {
            decoder: self.decoder,
            region: !self.full_decode,
            dct_scale: self.dct_scale,
        }
    }

    /// How a benchmark peer made with these options is named after `barlow`: none for the
    /// defaults, else `zune`, `turbo-full` or `turbo-region`.
    pub fn peer_suffix(&self) -> Option<String> {
        let o = self.options();
        if o == DecodeOptions::default() {
            return None;
        }
        let scaled = if o.dct_scale { "-scaled" } else { "" };
        Some(match (o.decoder, o.region) {
            (Decoder::Turbo, true) => format!("turbo-region{scaled}"),
            (Decoder::Turbo, false) => format!("turbo-full{scaled}"),
            (d, _) => d.name().into(),
        })
    }
}
