//! The TOTP enrolment page's QR code reads back as its `otpauth://` URI with a decoder that
//! owes nothing to ours: Chromium draws the SVG (as a page would), and zxing-cpp (Python's
//! `zxing-cpp` wheel, which scripts/test installs) decodes the pixels.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::json;

use crate::browser_support::Browser;

/// Draws `arguments[0]` (SVG markup) as an image on a canvas at `arguments[1]` times its
/// size, and answers its width, height and gray levels (one byte a pixel, base64).
const RASTERIZE_SCRIPT: &str = "\
    const [svg, scale] = arguments;\
    const url = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));\
    const image = new Image();\
    image.src = url;\
    return image.decode().then(() => {\
      const canvas = document.createElement('canvas');\
      canvas.width = image.naturalWidth * scale;\
      canvas.height = image.naturalHeight * scale;\
      const context = canvas.getContext('2d');\
      context.imageSmoothingEnabled = false;\
      context.drawImage(image, 0, 0, canvas.width, canvas.height);\
      const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;\
      let gray = '';\
      for (let index = 0; index < rgba.length; index += 4) {\
        gray += String.fromCharCode(rgba[index]);\
      }\
      URL.revokeObjectURL(url);\
      return [canvas.width, canvas.height, btoa(gray)];\
    });";

/// Reads QR codes in a gray image (width, height, one byte a pixel on stdin) with
/// zxing-cpp; prints each one's text as JSON, one a line.
const DECODE_SCRIPT: &str = "\
import json, sys, zxingcpp
width, height = int(sys.argv[1]), int(sys.argv[2])
pixels = memoryview(sys.stdin.buffer.read()).cast('B', (height, width))
for barcode in zxingcpp.read_barcodes(pixels, formats=zxingcpp.BarcodeFormat.QRCode):
    print(json.dumps(barcode.text))
";

/// The texts zxing-cpp reads in the gray image.
fn decode_with_zxing(width: u64, height: u64, gray: &[u8]) -> Vec<String> {
    let mut decoder = Command::new("python3")
        .args(["-c", DECODE_SCRIPT, &width.to_string(), &height.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    decoder.stdin.take().unwrap().write_all(gray).unwrap();
    let output = decoder.wait_with_output().unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "zxing-cpp did not run (scripts/test installs it: pip install zxing-cpp): {errors}"
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn the_enrolment_qr_code_decodes_back_to_its_otpauth_uri() {
    let browser = Browser::start().await;
    browser.goto("about:blank").await;
    for uri in [
        "otpauth://totp/Latchkey:ada%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Latchkey&algorithm=SHA1&digits=6&period=30",
        // A longer name and issuer make a bigger code (a higher QR version).
        "otpauth://totp/Acme%20Corporation%20Single%20Sign-On:someone.with.a.long.address%40subdomain.example.org?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Corporation%20Single%20Sign-On",
    ] {
        let svg = latchkey::http::pages::qr_code::qr_code_svg(uri, "QR code").unwrap();
        let drawn = browser.execute(RASTERIZE_SCRIPT, json!([svg, 2])).await;
        let (width, height) = (drawn[0].as_u64().unwrap(), drawn[1].as_u64().unwrap());
        let gray = base64::engine::general_purpose::STANDARD
            .decode(drawn[2].as_str().unwrap())
            .unwrap();
        assert_eq!(gray.len() as u64, width * height);
        assert_eq!(decode_with_zxing(width, height, &gray), [uri]);
    }
}
