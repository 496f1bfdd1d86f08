//! `ferrops data patches`: cuts random square patches from images (PNG and JPEG through the
//! `image` crate, and binary PGM `P5` / PPM `P6`; colour is averaged to grey), removes each
//! patch's mean, ZCA-whitens the set, and writes one patch per line as space-separated numbers,
//! the input of `ferrops train rica`.
//!
//! An image's size is read from its header and held to a pixel budget before any pixel is
//! decoded: a few hundred KB of compressed PNG can claim gigabytes of pixels.

use std::io::{self, Cursor, Write};
use std::path::Path;

use super::echo;
use crate::internal::synth::Rng;

/// The default pixel budget per image (32 Mi pixels; decoding takes up to about 24 bytes per
/// pixel).
pub const DEFAULT_MAX_PIXELS: u64 = 1 << 25;

/// A greyscale image with values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Grey {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
}

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
}

/// Reads a binary PGM (`P5`) or PPM (`P6`) file with 8-bit samples, of at most `max_pixels`.
pub fn read_pnm(path: &Path, max_pixels: u64) -> Result<Grey, ImageError> {
    read_with(path, max_pixels, parse_pnm)
}

/// Reads an image of at most `max_pixels` as grey: binary PGM/PPM by our own parser, PNG and
/// JPEG through the `image` crate (recognised by their contents, not the file name). Colour is
/// averaged to grey.
pub fn read_image(path: &Path, max_pixels: u64) -> Result<Grey, ImageError> {
    read_with(path, max_pixels, decode_image)
}

/// Reads the file at `path` and decodes its bytes with `decode`; errors name the file.
fn read_with(
    path: &Path,
    max_pixels: u64,
    decode: fn(&[u8], u64) -> Result<Grey, String>,
) -> Result<Grey, ImageError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        path: name.clone(),
        source,
    })?;
    decode(&bytes, max_pixels).map_err(|message| ImageError::Format {
        path: name,
        message,
    })
}

/// Refuses an image of `width` × `height` above the budget.
fn check_pixels(width: u64, height: u64, max_pixels: u64) -> Result<(), String> {
    let pixels = u128::from(width) * u128::from(height);
    if pixels > u128::from(max_pixels) {
        return Err(format!(
            "the image is {width} × {height} = {pixels} pixels, more than --max-pixels \
             {max_pixels}"
        ));
    }
    Ok(())
}

/// Decodes image bytes (PGM/PPM, PNG or JPEG) of at most `max_pixels` to grey.
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<Grey, String> {
    if bytes.starts_with(b"P5") || bytes.starts_with(b"P6") {
        return parse_pnm(bytes, max_pixels);
    }
    let format = image::guess_format(bytes)
        .map_err(|_| "not a PNG, JPEG or binary PGM/PPM image".to_string())?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err(format!(
            "{format:?} images are not supported (PNG, JPEG, binary PGM/PPM are)"
        ));
    }
    let name = if format == image::ImageFormat::Png {
        "PNG"
    } else {
        "JPEG"
    };
    let reader = || image::ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader()
        .into_dimensions()
        .map_err(|e| format!("cannot read the {name} image's size: {e}"))?;
    check_pixels(width.into(), height.into(), max_pixels)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    let mut decoder = reader();
    decoder.limits(limits);
    let decoded = decoder
        .decode()
        .map_err(|e| format!("cannot decode the {name} image: {e}"))?;
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    if width == 0 || height == 0 {
        return Err("the image is empty".into());
    }
    let rgb = decoded.to_rgb32f();
    let pixels = rgb
        .pixels()
        .map(|p| (p.0[0] + p.0[1] + p.0[2]) / 3.0)
        .collect();
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

/// Parses PGM/PPM bytes of at most `max_pixels`.
pub fn parse_pnm(bytes: &[u8], max_pixels: u64) -> Result<Grey, String> {
    let mut at = 0;
    let mut fields = Vec::new();
    while fields.len() < 4 {
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'#') {
            if bytes[at] == b'#' {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            } else {
                at += 1;
            }
        }
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if start == at {
            return Err("truncated header".into());
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    at += 1; // the single whitespace byte before the samples
    let channels = match fields[0].as_str() {
        "P5" => 1,
        "P6" => 3,
        other => {
            let magic = echo(other);
            return Err(format!("not a binary PGM/PPM file (magic {magic})"));
        }
    };
    let number = |i: usize, what: &str| -> Result<usize, String> {
        fields[i]
            .parse()
            .map_err(|_| format!("bad {what} {}", echo(&fields[i])))
    };
    let (width, height, max) = (
        number(1, "width")?,
        number(2, "height")?,
        number(3, "maxval")?,
    );
    if max == 0 || max > 255 {
        return Err(format!("maxval {max} is not 1..=255 (only 8-bit images)"));
    }
    check_pixels(width as u64, height as u64, max_pixels)?;
    let need = (width.checked_mul(height))
        .and_then(|pixels| pixels.checked_mul(channels))
        .ok_or("the image is too large to address")?;
    let data = bytes
        .get(at..at.saturating_add(need))
        .ok_or("truncated pixel data")?;
    let pixels = data
        .chunks(channels)
        .map(|px| px.iter().map(|&v| f32::from(v)).sum::<f32>() / (channels * max) as f32)
        .collect();
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

/// Shrinks an image by `factor`, each output pixel the mean of a `factor`×`factor` block
/// (a partial last row or column of blocks is dropped); factor 1 returns a copy.
pub fn downscale(g: &Grey, factor: usize) -> Grey {
    if factor <= 1 {
        return g.clone();
    }
    let (width, height) = (g.width / factor, g.height / factor);
    let mut pixels = vec![0f32; width * height];
    for (y, row) in pixels.chunks_mut(width.max(1)).enumerate().take(height) {
        for (x, out) in row.iter_mut().enumerate() {
            let mut sum = 0f32;
            for dy in 0..factor {
                let at = (y * factor + dy) * g.width + x * factor;
                sum += g.pixels[at..at + factor].iter().sum::<f32>();
            }
            *out = sum / (factor * factor) as f32;
        }
    }
    Grey {
        width,
        height,
        pixels,
    }
}

/// Cuts `count` random `size`×`size` patches (row-major), spread evenly over the images, each
/// with its mean removed.
pub fn cut(images: &[Grey], size: usize, count: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let usable: Vec<&Grey> = images
        .iter()
        .filter(|g| g.width >= size && g.height >= size)
        .collect();
    if usable.is_empty() {
        return Vec::new();
    }
    (0..count)
        .map(|n| {
            let g = usable[n % usable.len()];
            let x = (rng.next_u64() % (g.width - size + 1) as u64) as usize;
            let y = (rng.next_u64() % (g.height - size + 1) as u64) as usize;
            let mut p: Vec<f32> = (0..size)
                .flat_map(|r| g.pixels[(y + r) * g.width + x..][..size].iter().copied())
                .collect();
            let mean = p.iter().sum::<f32>() / p.len() as f32;
            p.iter_mut().for_each(|v| *v -= mean);
            p
        })
        .collect()
}

/// Symmetric eigen-decomposition by cyclic Jacobi rotations: returns (eigenvalues, eigenvectors
/// as the columns of a row-major `n`×`n` matrix).
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// ZCA-whitens the patches in place: x ← U diag(1/√(λ + eps)) Uᵀ x, with the eigen-decomposition
/// U diag(λ) Uᵀ of their covariance.
pub fn zca_whiten(patches: &mut [Vec<f32>], eps: f64) {
    let Some(d) = patches.first().map(Vec::len) else {
        return;
    };
    let mut cov = vec![0.0f64; d * d];
    for p in patches.iter() {
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] += f64::from(p[i]) * f64::from(p[j]);
            }
        }
    }
    cov.iter_mut().for_each(|c| *c /= patches.len() as f64);
    let (values, u) = symmetric_eigen(&cov, d);
    let mut m = vec![0.0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            m[i * d + j] = (0..d)
                .map(|k| u[i * d + k] * u[j * d + k] / (values[k].max(0.0) + eps).sqrt())
                .sum();
        }
    }
    for p in patches.iter_mut() {
        let x: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
        for i in 0..d {
            p[i] = (0..d).map(|j| m[i * d + j] * x[j]).sum::<f64>() as f32;
        }
    }
}

/// Writes one patch per line.
pub fn write(patches: &[Vec<f32>], out: &mut impl Write) -> io::Result<()> {
    for p in patches {
        let line: Vec<String> = p.iter().map(|v| format!("{v:.6}")).collect();
        writeln!(out, "{}", line.join(" "))?;
    }
    out.flush()
}

/// Reads patches written by [`write`]; every line must have the same length.
pub fn read(path: &Path) -> Result<Vec<Vec<f32>>, ImageError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ImageError::Io {
        path: name.clone(),
        source,
    })?;
    let mut out: Vec<Vec<f32>> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let p = line
            .split_ascii_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<f32>, _>>()
            .map_err(|e| ImageError::Format {
                path: format!("{name}:{}", n + 1),
                message: e.to_string(),
            })?;
        if out.first().is_some_and(|f| f.len() != p.len()) {
            return Err(ImageError::Format {
                path: format!("{name}:{}", n + 1),
                message: format!("{} values, earlier lines have {}", p.len(), out[0].len()),
            });
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgm_and_ppm_and_rejects_others() {
        let mut pgm = b"P5\n# c\n3 2\n255\n".to_vec();
        pgm.extend_from_slice(&[0, 255, 51, 102, 153, 204]);
        let g = parse_pnm(&pgm, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((g.width, g.height), (3, 2));
        assert!((g.pixels[1] - 1.0).abs() < 1e-6 && (g.pixels[2] - 0.2).abs() < 1e-6);
        let mut ppm = b"P6 1 1 255\n".to_vec();
        ppm.extend_from_slice(&[255, 0, 0]);
        assert!((parse_pnm(&ppm, DEFAULT_MAX_PIXELS).unwrap().pixels[0] - 1.0 / 3.0).abs() < 1e-6);
        assert!(parse_pnm(b"P2 1 1 255\n0", DEFAULT_MAX_PIXELS).is_err());
        assert!(parse_pnm(b"P5 4 4 255\n\x00", DEFAULT_MAX_PIXELS).is_err());
    }

    #[test]
    fn downscale_averages_blocks() {
        let g = Grey {
            width: 5,
            height: 4,
            pixels: (0..20).map(|v| v as f32).collect(),
        };
        let h = downscale(&g, 2);
        assert_eq!((h.width, h.height), (2, 2));
        assert_eq!(h.pixels, vec![3.0, 5.0, 13.0, 15.0]);
        assert_eq!(downscale(&g, 1), g);
        assert_eq!(downscale(&g, 9).pixels.len(), 0);
    }

    #[test]
    fn whitened_patches_have_identity_covariance() {
        let mut rng = Rng::new(3);
        let img = Grey {
            width: 40,
            height: 40,
            pixels: (0..1600)
                .map(|i| ((i % 40) as f32 * 0.1).sin() + 0.3 * rng.unit() as f32)
                .collect(),
        };
        let mut p = cut(&[img], 4, 3000, 1);
        assert_eq!(p.len(), 3000);
        assert!(p.iter().all(|x| x.iter().sum::<f32>().abs() < 1e-4));
        zca_whiten(&mut p, 1e-6);
        // Mean removal leaves one direction of zero variance; the rest is whitened.
        let d = 16;
        let mut cov = vec![0.0f64; d * d];
        for x in &p {
            for i in 0..d {
                for j in 0..d {
                    cov[i * d + j] += f64::from(x[i] * x[j]) / p.len() as f64;
                }
            }
        }
        let (values, _) = symmetric_eigen(&cov, d);
        let near_one = values.iter().filter(|v| (**v - 1.0).abs() < 0.05).count();
        assert_eq!(near_one, d - 1, "{values:?}");
    }
}
