//! Line plots as PNG files with no dependencies and no fonts: a white canvas, axes with ten
//! ticks each, and one coloured polyline per series (colours in [`COLOURS`] order). The PNG
//! encoder writes uncompressed deflate blocks, which every viewer reads.

use std::io::{self, Write};
use std::path::Path;

/// Series colours, in order: blue, orange, green, red, purple, brown, pink, grey.
pub const COLOURS: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

/// An RGB image.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![255; width * height * 3],
        }
    }

    /// Colours one pixel (ignored outside the canvas).
    pub fn set(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let at = (y as usize * self.width + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&rgb);
        }
    }

    /// The colour of one pixel.
    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let at = (y * self.width + x) * 3;
        [self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]]
    }

    /// A line two pixels wide (Bresenham).
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), rgb: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, rgb);
            self.set(x + 1, y, rgb);
            self.set(x, y + 1, rgb);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Encodes the canvas as PNG.
    pub fn write_png(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(b"\x89PNG\r\n\x1a\n")?;
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(self.width as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.height as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
        chunk(out, b"IHDR", &ihdr)?;
        let mut raw = Vec::with_capacity(self.height * (1 + self.width * 3));
        for row in self.pixels.chunks(self.width * 3) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        let mut z = vec![0x78, 0x01];
        let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
        for (i, block) in blocks.iter().enumerate() {
            z.push(u8::from(i + 1 == blocks.len()));
            let len = block.len() as u16;
            z.extend_from_slice(&len.to_le_bytes());
            z.extend_from_slice(&(!len).to_le_bytes());
            z.extend_from_slice(block);
        }
        z.extend_from_slice(&adler32(&raw).to_be_bytes());
        chunk(out, b"IDAT", &z)?;
        chunk(out, b"IEND", &[])
    }
}

fn chunk(out: &mut impl Write, kind: &[u8; 4], data: &[u8]) -> io::Result<()> {
    out.write_all(&(data.len() as u32).to_be_bytes())?;
    out.write_all(kind)?;
    out.write_all(data)?;
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    out.write_all(&crc.finish().to_be_bytes())
}

/// CRC-32 (IEEE, as PNG uses).
struct Crc(u32);

impl Crc {
    fn new() -> Crc {
        Crc(0xFFFF_FFFF)
    }
    fn update(&mut self, data: &[u8]) {
        for &b in data {
            let mut c = (self.0 ^ u32::from(b)) & 0xFF;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            self.0 = c ^ (self.0 >> 8);
        }
    }
    fn finish(&self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    (b << 16) | a
}

/// Plots each series of `(x, y)` points (x and y ranges shared, y optionally on a log scale)
/// and writes the PNG.
pub fn plot(path: &Path, series: &[Vec<(f64, f64)>], log_y: bool) -> io::Result<()> {
    let (w, h, margin) = (800usize, 500usize, 40i64);
    let mut c = Canvas::new(w, h);
    let ty = |y: f64| if log_y { y.max(1e-300).log10() } else { y };
    let points = series.iter().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(ty(y));
        y1 = y1.max(ty(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1.0;
    }
    let (pw, ph) = (w as i64 - 2 * margin, h as i64 - 2 * margin);
    let px = |x: f64| margin + ((x - x0) / (x1 - x0) * pw as f64).round() as i64;
    let py = |y: f64| h as i64 - margin - ((ty(y) - y0) / (y1 - y0) * ph as f64).round() as i64;
    let black = [0, 0, 0];
    let bottom = h as i64 - margin;
    c.line((margin, bottom), (margin + pw, bottom), black);
    c.line((margin, bottom), (margin, margin), black);
    for k in 0..=10 {
        let tx = margin + pw * k / 10;
        let tyk = bottom - ph * k / 10;
        c.line((tx, bottom), (tx, bottom + 6), black);
        c.line((margin - 6, tyk), (margin, tyk), black);
    }
    for (s, pts) in series.iter().enumerate() {
        let colour = COLOURS[s % COLOURS.len()];
        for pair in pts.windows(2) {
            c.line(
                (px(pair[0].0), py(pair[0].1)),
                (px(pair[1].0), py(pair[1].1)),
                colour,
            );
        }
        if let [only] = pts.as_slice() {
            c.line((px(only.0), py(only.1)), (px(only.0), py(only.1)), colour);
        }
    }
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    c.write_png(&mut out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        let mut crc = Crc::new();
        crc.update(b"123456789");
        assert_eq!(crc.finish(), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn png_has_signature_size_and_the_line_is_drawn() {
        let mut c = Canvas::new(20, 10);
        c.line((0, 0), (19, 9), [1, 2, 3]);
        assert_eq!(c.get(0, 0), [1, 2, 3]);
        assert_eq!(c.get(19, 9), [1, 2, 3]);
        assert_eq!(c.get(19, 0), [255, 255, 255]);
        let mut png = Vec::new();
        c.write_png(&mut png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[16..24], &[0, 0, 0, 20, 0, 0, 0, 10]);
        assert!(png.ends_with(&[0xAE, 0x42, 0x60, 0x82])); // IEND's CRC
    }
}
