//! Gaussian blurs, each bit-exact (or within a stated bound) with the library a method's official
//! code blurs with: Pillow's extended box blur ([`pillow`]: Barlow Twins, MoCo v3, DINO), OpenCV's
//! fixed-point Gaussian ([`opencv`]: SwAV) and torchvision's float Gaussian ([`torchvision`]:
//! DINOv2). [`BlurFilter`] names one; [`Blurs::apply`] runs it.

use serde::{Deserialize, Serialize};

pub mod opencv;
pub mod pillow;
pub mod torchvision;

pub use pillow::{box_radius, gaussian_blur, BlurScratch, BoxWeights};

/// Largest kernel side an OpenCV or torchvision blur may have.
pub const MAX_KERNEL: u32 = 255;

/// Which library's Gaussian blur a view gets, as its method's official code calls it. In JSON
/// `{"library": "pillow"}` (the default: `ImageFilter.GaussianBlur(sigma)`),
/// `{"library": "opencv", "kernel": 23}` (`cv2.GaussianBlur(img, (23, 23), sigma)`) or
/// `{"library": "torchvision", "kernel": 9}` (`transforms.GaussianBlur(9, sigma)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BlurFilterJson", into = "BlurFilterJson")]
pub enum BlurFilter {
    #[default]
    Pillow,
    Opencv {
        kernel: u32,
    },
    Torchvision {
        kernel: u32,
    },
}

/// [`BlurFilter`]'s JSON form: a library and, for all but Pillow, a kernel size.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlurFilterJson {
    library: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kernel: Option<u32>,
}

impl TryFrom<BlurFilterJson> for BlurFilter {
    type Error = String;
    fn try_from(j: BlurFilterJson) -> Result<BlurFilter, String> {
        match (j.library.as_str(), j.kernel) {
            ("pillow", None) => Ok(BlurFilter::Pillow),
            ("pillow", Some(_)) => {
                Err("Pillow's blur takes no kernel size (it is a box blur)".into())
            }
            ("opencv", Some(kernel)) => Ok(BlurFilter::Opencv { kernel }),
            ("torchvision", Some(kernel)) => Ok(BlurFilter::Torchvision { kernel }),
            ("opencv" | "torchvision", None) => Err(format!(
                "the {} blur needs a kernel size, like {{\"library\": \"{}\", \"kernel\": 9}}",
                j.library, j.library
            )),
            (other, _) => Err(format!(
                "unknown blur library {other:?}; the libraries are pillow, opencv, torchvision"
            )),
        }
    }
}

impl From<BlurFilter> for BlurFilterJson {
    fn from(f: BlurFilter) -> BlurFilterJson {
        let (library, kernel) = match f {
            BlurFilter::Pillow => ("pillow", None),
            BlurFilter::Opencv { kernel } => ("opencv", Some(kernel)),
            BlurFilter::Torchvision { kernel } => ("torchvision", Some(kernel)),
        };
        BlurFilterJson {
            library: library.into(),
            kernel,
        }
    }
}

impl BlurFilter {
    /// Whether this is Pillow's blur (the default, left out of JSON).
    pub fn is_pillow(&self) -> bool {
        *self == BlurFilter::Pillow
    }

    /// Checks the kernel size, with a message fit for a user.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            BlurFilter::Pillow => Ok(()),
            BlurFilter::Opencv { kernel } | BlurFilter::Torchvision { kernel } => {
                if kernel % 2 == 1 && kernel <= MAX_KERNEL {
                    Ok(())
                } else {
                    Err(format!(
                        "blur_filter kernel must be odd and in 1..={MAX_KERNEL}, not {kernel}"
                    ))
                }
            }
        }
    }

    /// A short name for reports: `pillow`, `opencv 23x23`, `torchvision 9x9`.
    pub fn describe(&self) -> String {
        match *self {
            BlurFilter::Pillow => "pillow".into(),
            BlurFilter::Opencv { kernel } => format!("opencv {kernel}x{kernel}"),
            BlurFilter::Torchvision { kernel } => format!("torchvision {kernel}x{kernel}"),
        }
    }
}

/// Index `i` (possibly outside `0..n`) mirrored into `0..n` without repeating the edge, folding
/// again as often as needed (`BORDER_REFLECT_101`); 0 for `n == 1`.
pub(crate) fn reflect_101(mut i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    loop {
        if i < 0 {
            i = -i;
        } else if i >= n {
            i = 2 * n - 2 - i;
        } else {
            return i as usize;
        }
    }
}

/// Per-worker buffers for every blur: create one per thread and reuse it.
#[derive(Default)]
pub struct Blurs {
    pillow: BlurScratch,
    opencv: opencv::Scratch,
    torchvision: torchvision::Scratch,
}

impl Blurs {
    /// Blurs the interleaved RGB image `pixels` of `width x height` in place with `filter` at
    /// `sigma`. `flipped`: the view will be mirrored after this, where the official code mirrors
    /// before blurring; only torchvision's float blur is not mirror-symmetric to the bit (Pillow's
    /// and OpenCV's sums are exact integers), so only it blurs differently
    /// ([`torchvision::gaussian_blur_of_mirror`]).
    pub fn apply(
        &mut self,
        filter: BlurFilter,
        pixels: &mut [u8],
        width: usize,
        height: usize,
        sigma: f64,
        flipped: bool,
    ) {
        match filter {
            BlurFilter::Pillow => gaussian_blur(pixels, width, height, sigma, &mut self.pillow),
            BlurFilter::Opencv { kernel } => opencv::gaussian_blur(
                pixels,
                width,
                height,
                kernel as usize,
                sigma,
                &mut self.opencv,
            ),
            BlurFilter::Torchvision { kernel } if flipped => torchvision::gaussian_blur_of_mirror(
                pixels,
                width,
                height,
                kernel as usize,
                sigma,
                &mut self.torchvision,
            ),
            BlurFilter::Torchvision { kernel } => torchvision::gaussian_blur(
                pixels,
                width,
                height,
                kernel as usize,
                sigma,
                &mut self.torchvision,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_filters_read_and_write_their_json() {
        for (json, filter) in [
            (r#"{"library":"pillow"}"#, BlurFilter::Pillow),
            (
                r#"{"library":"opencv","kernel":23}"#,
                BlurFilter::Opencv { kernel: 23 },
            ),
            (
                r#"{"library":"torchvision","kernel":9}"#,
                BlurFilter::Torchvision { kernel: 9 },
            ),
        ] {
            assert_eq!(serde_json::from_str::<BlurFilter>(json).unwrap(), filter);
            assert_eq!(serde_json::to_string(&filter).unwrap(), json);
            assert!(filter.validate().is_ok());
        }
        for bad in [
            r#"{"library":"opencv"}"#,
            r#"{"library":"gimp","kernel":3}"#,
            r#"{"library":"pillow","kernel":3}"#,
        ] {
            assert!(serde_json::from_str::<BlurFilter>(bad).is_err(), "{bad}");
        }
        for kernel in [0, 2, 24, 257] {
            let e = BlurFilter::Opencv { kernel }.validate().unwrap_err();
            assert!(e.contains("kernel"), "{e}");
        }
    }
}
