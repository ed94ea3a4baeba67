//! The command-line options that choose how images are decoded, shared by a run, `bench`,
//! `profile`, `preview` and `augment`: `--decoder zune|turbo` and `--full-decode`.

use decode::Decoder;
use views::sample::DecodeOptions;

/// Which JPEG decoder, and whether to decode only what the views need.
#[derive(clap::Args, Debug, Clone)]
pub struct DecodeArgs {
    /// JPEG decoder: `turbo` (libjpeg-turbo, what Pillow uses: the official pipeline's pixels
    /// byte for byte) or `zune` (zune-jpeg, pure Rust; a few levels off Pillow's pixels).
    #[arg(long, default_value_t = Decoder::default(), value_parser = parse_decoder)]
    pub decoder: Decoder,
    /// Decode whole images. By default `turbo` decodes only the union of each sample's crops
    /// (same bytes, less work); this turns that off (for measuring it).
    #[arg(long)]
    pub full_decode: bool,
}

impl Default for DecodeArgs {
    fn default() -> DecodeArgs {
        DecodeArgs {
            decoder: Decoder::default(),
            full_decode: false,
        }
    }
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
        }
    }

    /// How a benchmark peer made with these options is named after `barlow`: none for the
    /// defaults, else `zune`, `turbo-full` or `turbo-region`.
    pub fn peer_suffix(&self) -> Option<String> {
        let o = self.options();
        if o == DecodeOptions::default() {
            return None;
        }
        Some(match (o.decoder, o.decodes_regions()) {
            (Decoder::Turbo, true) => "turbo-region".into(),
            (Decoder::Turbo, false) => "turbo-full".into(),
            (d, _) => d.name().into(),
        })
    }
}
