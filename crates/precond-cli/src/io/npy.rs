//! NumPy `.npy` reader.
//!
//! Supported: format versions 1.0, 2.0 and 3.0 (16-bit header length for 1.0, 32-bit for 2.0
//! and 3.0; the 3.0 header is UTF-8); `descr` `'<f8'` or `'<f4'` (and their big-endian forms
//! `'>f8'`, `'>f4'`; f4 values are widened to f64); `fortran_order` `True` or `False`; `shape`
//! of two dimensions `(m, n)`, or one dimension `(n,)`, read as an `n × 1` column (a vector's
//! condition number is then 1). Everything else (other dtypes, structured dtypes, 0-D or 3-D and
//! higher arrays, pickled object arrays) is rejected with a message naming the byte offset.

use super::error::byte_err;
use super::{DenseMatrix, ReadError, check_shape, shorten};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parses the bytes of a `.npy` file into a dense matrix.
pub fn read_npy(bytes: &[u8]) -> Result<DenseMatrix, ReadError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(byte_err(
            0,
            "expected the .npy magic string \\x93NUMPY (is this a NumPy .npy file?)",
        ));
    }
    if bytes.len() < 8 {
        return Err(ReadError::Truncated {
            expected: "the .npy version bytes at byte 6".into(),
        });
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_size, utf8) = match major {
        1 => (2usize, false),
        2 => (4, false),
        3 => (4, true),
        _ => {
            return Err(byte_err(
                6,
                format!(
                    "unsupported .npy format version {major}.{minor}: expected 1.0, 2.0 or 3.0"
                ),
            ));
        }
    };
    if minor != 0 {
        return Err(byte_err(
            7,
            format!("unsupported .npy format version {major}.{minor}: expected 1.0, 2.0 or 3.0"),
        ));
    }
    let hstart = 8 + len_size;
    if bytes.len() < hstart {
        return Err(ReadError::Truncated {
            expected: format!("the {len_size}-byte header length at byte 8"),
        });
    }
    let hlen = if len_size == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let hend = hstart.saturating_add(hlen);
    if bytes.len() < hend {
        return Err(ReadError::Truncated {
            expected: format!(
                "a header of {hlen} bytes at byte {hstart}, file has {} bytes",
                bytes.len()
            ),
        });
    }
    let hbytes = &bytes[hstart..hend];
    let header = if utf8 {
        std::str::from_utf8(hbytes)
            .map_err(|e| byte_err(hstart + e.valid_up_to(), "invalid UTF-8 in the .npy header"))?
    } else {
        match hbytes.iter().position(|b| !b.is_ascii()) {
            Some(p) => {
                return Err(byte_err(
                    hstart + p,
                    "non-ASCII byte in a version 1/2 .npy header",
                ));
            }
            // All ASCII, so valid UTF-8.
            None => std::str::from_utf8(hbytes).map_err(|_| byte_err(hstart, "bad header"))?,
        }
    };
    let h = parse_header(header).map_err(|(off, msg)| byte_err(hstart + off, msg))?;
    let (elem, big_endian) = match h.descr.as_str() {
        "<f8" => (8usize, false),
        "<f4" => (4, false),
        ">f8" => (8, true),
        ">f4" => (4, true),
        other => {
            return Err(byte_err(
                hstart + h.descr_offset,
                format!(
                    "unsupported dtype '{}': expected '<f8' (float64) or '<f4' (float32); convert with a.astype(np.float64)",
                    shorten(other)
                ),
            ));
        }
    };
    let (m, n) = match h.shape.as_slice() {
        [n] => (*n, 1usize),
        [m, n] => (*m, *n),
        s => {
            return Err(byte_err(
                hstart + h.shape_offset,
                format!(
                    "unsupported {}-D array: expected a 2-D matrix (or a 1-D vector, read as a column)",
                    s.len()
                ),
            ));
        }
    };
    check_shape(m, n)?;
    let count = m * n;
    let need = count * elem;
    let body = &bytes[hend..];
    if body.len() < need {
        return Err(ReadError::Truncated {
            expected: format!(
                "{count} values of {elem} bytes ({need} bytes) from byte {hend}, found {} bytes",
                body.len()
            ),
        });
    }
    if body.len() > need {
        return Err(byte_err(
            hend + need,
            format!(
                "{} extra bytes after the {count} values the header declares",
                body.len() - need
            ),
        ));
    }
    let mut data = vec![0.0f64; count];
    for (k, chunk) in body.chunks_exact(elem).enumerate() {
        let v = if elem == 8 {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            if big_endian {
                f64::from_be_bytes(b)
            } else {
                f64::from_le_bytes(b)
            }
        } else {
            let mut b = [0u8; 4];
            b.copy_from_slice(chunk);
            f64::from(if big_endian {
                f32::from_be_bytes(b)
            } else {
                f32::from_le_bytes(b)
            })
        };
        // Element k in file order: C order is row-major, Fortran order column-major.
        let (i, j) = if h.fortran {
            (k % m, k / m)
        } else {
            (k / n, k % n)
        };
        if !v.is_finite() {
            return Err(byte_err(
                hend + k * elem,
                format!("non-finite value {v} at element ({i}, {j}): expected a finite number"),
            ));
        }
        data[i + j * m] = v;
    }
    Ok(DenseMatrix {
        nrows: m,
        ncols: n,
        data,
        declared_symmetric: false,
    })
}

struct Header {
    descr: String,
    descr_offset: usize,
    fortran: bool,
    shape: Vec<usize>,
    shape_offset: usize,
}

type HResult<T> = Result<T, (usize, String)>;

/// Parses the header dict literal `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }`.
/// Errors carry the offset inside the header.
fn parse_header(s: &str) -> HResult<Header> {
    let b = s.as_bytes();
    let mut p = Parser { b, pos: 0 };
    p.ws();
    p.expect(b'{', "'{' opening the header dictionary")?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    loop {
        p.ws();
        if p.peek() == Some(b'}') {
            break;
        }
        let key_off = p.pos;
        let key = p.string()?;
        p.ws();
        p.expect(b':', "':' after a header key")?;
        p.ws();
        let val_off = p.pos;
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err((
                        val_off,
                        "structured dtypes are not supported: expected '<f8' or '<f4'".into(),
                    ));
                }
                descr = Some((p.string()?, val_off));
            }
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some((p.tuple()?, val_off)),
            other => {
                return Err((
                    key_off,
                    format!(
                        "unexpected header key '{}': expected 'descr', 'fortran_order' or 'shape'",
                        shorten(other)
                    ),
                ));
            }
        }
        p.ws();
        match p.peek() {
            Some(b',') => p.pos += 1,
            Some(b'}') => {}
            _ => return Err((p.pos, "expected ',' or '}' in the header dictionary".into())),
        }
    }
    let (descr, descr_offset) = descr.ok_or((0, "the header has no 'descr' key".to_string()))?;
    let fortran = fortran.ok_or((0, "the header has no 'fortran_order' key".to_string()))?;
    let (shape, shape_offset) = shape.ok_or((0, "the header has no 'shape' key".to_string()))?;
    Ok(Header {
        descr,
        descr_offset,
        fortran,
        shape,
        shape_offset,
    })
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }
    fn expect(&mut self, c: u8, what: &str) -> HResult<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err((self.pos, format!("expected {what}")))
        }
    }
    fn string(&mut self) -> HResult<String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err((self.pos, "expected a quoted string".into())),
        };
        let start = self.pos + 1;
        let mut i = start;
        while i < self.b.len() && self.b[i] != q {
            i += 1;
        }
        if i >= self.b.len() {
            return Err((self.pos, "unterminated string in the header".into()));
        }
        self.pos = i + 1;
        Ok(String::from_utf8_lossy(&self.b[start..i]).into_owned())
    }
    fn boolean(&mut self) -> HResult<bool> {
        let rest = &self.b[self.pos..];
        if rest.starts_with(b"True") {
            self.pos += 4;
            Ok(true)
        } else if rest.starts_with(b"False") {
            self.pos += 5;
            Ok(false)
        } else {
            Err((
                self.pos,
                "expected True or False for 'fortran_order'".into(),
            ))
        }
    }
    fn tuple(&mut self) -> HResult<Vec<usize>> {
        self.expect(b'(', "'(' opening the shape tuple")?;
        let mut dims = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(b')') {
                self.pos += 1;
                return Ok(dims);
            }
            let start = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if start == self.pos {
                return Err((
                    start,
                    "expected a non-negative integer in the shape tuple".into(),
                ));
            }
            // Digits only, so this is ASCII; overflow is the only failure.
            let txt = std::str::from_utf8(&self.b[start..self.pos]).unwrap_or("");
            let d = txt
                .parse::<usize>()
                .map_err(|_| (start, format!("shape dimension {txt} is too large")))?;
            dims.push(d);
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {}
                _ => return Err((self.pos, "expected ',' or ')' in the shape tuple".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, body: &[u8], version: u8) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.push(version);
        v.push(0);
        if version == 1 {
            v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn c_and_fortran_order() {
        let body: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let c = read_npy(&npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n",
            &body,
            1,
        ))
        .expect("valid");
        // Row-major [[1,2,3],[4,5,6]].
        assert_eq!(c.data, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let f = read_npy(&npy(
            "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }\n",
            &body,
            2,
        ))
        .expect("valid");
        assert_eq!(f.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn rejects_int_dtype_with_offset() {
        let e = read_npy(&npy(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }\n",
            &[0; 8],
            1,
        ))
        .expect_err("int");
        assert!(
            e.to_string()
                .starts_with("byte 20: unsupported dtype '<i8'"),
            "{e}"
        );
    }
}
