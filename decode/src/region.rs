//! Region decode: which part of an image to decode so that the pixels a sample's views read come
//! out byte for byte as in a full decode.
//!
//! A view reads only its crop rectangle (torchvision's `resized_crop` crops, then resizes), so a
//! sample needs the union of its views' crops. libjpeg-turbo can decode a band of columns
//! (`jpeg_crop_scanline`, whose left edge must sit on an iMCU boundary) and skip rows
//! (`jpeg_skip_scanlines`); but at the edges of what it decodes, fancy upsampling sees no
//! neighbouring chroma sample and replicates the edge, so the outermost pixels differ from a full
//! decode. [`decode_window`] therefore widens the wanted rectangle by a margin of two chroma
//! samples (2 pixels per subsampling factor: 4 at 4:2:0) on every side that is not the image's own
//! edge, then aligns its left and top edges on iMCU boundaries; the pixels inside the wanted
//! rectangle are then exactly those of a full decode (asserted by the tests over random crops and
//! every subsampling, `decode/tests/region.rs`, which fail with no margin and pass with one
//! sample).

/// A rectangle of pixels: `w x h` from column `x`, row `y`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    /// The whole of a `width x height` image.
    pub fn full(width: u32, height: u32) -> Rect {
        Rect {
            x: 0,
            y: 0,
            w: width,
            h: height,
        }
    }

    /// The smallest rectangle holding both (an empty rectangle holds nothing).
    pub fn union(self, other: Rect) -> Rect {
        if self.is_empty() {
            return other;
        }
        if other.is_empty() {
            return self;
        }
        let (x, y) = (self.x.min(other.x), self.y.min(other.y));
        let right = (self.x + self.w).max(other.x + other.w);
        let bottom = (self.y + self.h).max(other.y + other.h);
        Rect {
            x,
            y,
            w: right - x,
            h: bottom - y,
        }
    }

    /// True when the rectangle has no pixel.
    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }

    /// True when `inner` lies inside `self`.
    pub fn contains(&self, inner: &Rect) -> bool {
        inner.x >= self.x
            && inner.y >= self.y
            && inner.x + inner.w <= self.x + self.w
            && inner.y + inner.h <= self.y + self.h
    }

    /// Pixels in the rectangle.
    pub fn area(&self) -> u64 {
        self.w as u64 * self.h as u64
    }
}

/// The rectangle to ask libjpeg-turbo for, so that `want` (inside a `width x height` image whose
/// iMCU is `imcu_w x imcu_h`) decodes exactly as in a full decode: [`MARGIN`] on each side that is
/// not the image's edge, the left edge rounded down to an iMCU boundary (as `jpeg_crop_scanline`
/// requires), the top edge rounded down too (libjpeg-turbo skips rows by whole iMCU rows),
/// clipped to the image.
///
/// A `progressive` image gets two more iMCUs of margin: where its scans leave coefficients
/// unknown (refinement scans left out, or corrupt data), libjpeg's block smoothing estimates them
/// from the blocks up to two away on every side, so a block at the edge of a cropped region would
/// be smoothed differently (found by the fuzz target).
pub fn decode_window(
    want: Rect,
    width: u32,
    height: u32,
    imcu_w: u32,
    imcu_h: u32,
    progressive: bool,
) -> Rect {
    let want = clip(want, width, height);
    let smoothing = if progressive { 2 } else { 0 };
    let (mx, my) = (
        MARGIN * imcu_w / 8 + smoothing * imcu_w,
        MARGIN * imcu_h / 8 + smoothing * imcu_h,
    );
    let x0 = want.x.saturating_sub(mx) / imcu_w * imcu_w;
    let y0 = want.y.saturating_sub(my) / imcu_h * imcu_h;
    let x1 = (want.x + want.w + mx).min(width);
    let y1 = (want.y + want.h + my).min(height);
    Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    }
}

/// The margin in pixels per 8 pixels of iMCU (so per 1 of chroma subsampling factor): fancy
/// upsampling reads one chroma sample on each side, i.e. up to `factor` luma pixels.
const MARGIN: u32 = 2;

/// `r` clipped to a `width x height` image.
pub fn clip(r: Rect, width: u32, height: u32) -> Rect {
    let x = r.x.min(width);
    let y = r.y.min(height);
    Rect {
        x,
        y,
        w: r.w.min(width - x),
        h: r.h.min(height - y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_and_contains() {
        let a = Rect {
            x: 2,
            y: 3,
            w: 4,
            h: 5,
        };
        let b = Rect {
            x: 10,
            y: 1,
            w: 2,
            h: 2,
        };
        let u = a.union(b);
        assert_eq!(
            u,
            Rect {
                x: 2,
                y: 1,
                w: 10,
                h: 7
            }
        );
        assert!(u.contains(&a) && u.contains(&b) && !a.contains(&u));
        assert_eq!(Rect::default().union(a), a);
    }

    #[test]
    fn window_has_margin_alignment_and_stays_inside() {
        let w = decode_window(
            Rect {
                x: 40,
                y: 40,
                w: 10,
                h: 10,
            },
            100,
            90,
            16,
            16,
            false,
        );
        assert_eq!(
            w,
            Rect {
                x: 32,
                y: 32,
                w: 22,
                h: 22
            }
        );
        let w = decode_window(
            Rect {
                x: 3,
                y: 0,
                w: 95,
                h: 90,
            },
            100,
            90,
            16,
            8,
            false,
        );
        assert_eq!(w, Rect::full(100, 90));
        // Progressive: two more iMCUs (block smoothing's reach).
        let w = decode_window(
            Rect {
                x: 60,
                y: 40,
                w: 10,
                h: 10,
            },
            200,
            90,
            16,
            16,
            true,
        );
        assert_eq!(
            w,
            Rect {
                x: 16,
                y: 0,
                w: 90,
                h: 86
            }
        );
    }
}
