/**
 * Reads the timestamp blocks a framecast test pattern stamps into each frame, so the browser can
 * measure glass-to-glass latency from the decoded pixels alone.
 *
 * Layout (the same as proto/src/framecast/proto/pattern.py): blocks of b = max(4, even(width / 40))
 * px, four rows of 32 from the top-left corner. Rows 0-1 carry word A = wall-clock ms (48 bits) +
 * check (16 bits); rows 2-3 carry word B = frame number (48 bits) + check (16 bits). Bits run MSB
 * first, left to right, row by row; white (luma 235) is 1 and black (luma 16) is 0. The check is
 * CRC-16/CCITT-FALSE of the six big-endian payload bytes. A bit is 1 when its block's central
 * half averages above 125.5, midway between black and white.
 */

export const COLUMNS = 32;
export const ROWS = 4;
const THRESHOLD = (16 + 235) / 2;

/** Side of one block, in px, for a frame `width` px wide. */
export function blockSize(width) {
  return Math.max(4, Math.floor(width / 40 / 2) * 2);
}

/** Height of the stamped strip at the top of a frame `width` px wide. */
export function stripHeight(width) {
  return ROWS * blockSize(width);
}

/** CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor). */
export function crc16(bytes) {
  let crc = 0xffff;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit += 1) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}

/**
 * Mean luma (mean of R, G and B, as the Python reader takes it) over the central half of the
 * block at (`column`, `row`): its edges ring after H.264.
 */
function blockLuma(image, b, column, row) {
  const { data, width } = image;
  const margin = Math.floor(b / 4);
  const span = b - 2 * margin;
  const x0 = column * b + margin;
  const y0 = row * b + margin;
  let sum = 0;
  for (let y = y0; y < y0 + span; y += 1) {
    for (let x = x0; x < x0 + span; x += 1) {
      const i = (y * width + x) * 4;
      sum += (data[i] + data[i + 1] + data[i + 2]) / 3;
    }
  }
  return sum / (span * span);
}

/** The 48-bit payload of the word in rows `row`..`row + 1`, or null when its check fails. */
function readWord(image, b, row) {
  const bytes = new Uint8Array(8);
  for (let i = 0; i < 2 * COLUMNS; i += 1) {
    if (blockLuma(image, b, i % COLUMNS, row + Math.floor(i / COLUMNS)) > THRESHOLD) {
      bytes[i >> 3] |= 0x80 >> (i & 7);
    }
  }
  if (crc16(bytes.subarray(0, 6)) !== ((bytes[6] << 8) | bytes[7])) return null;
  // 48 bits exceed 32-bit integer maths but fit exactly in a double.
  return bytes.subarray(0, 6).reduce((value, byte) => value * 256 + byte, 0);
}

/**
 * Decode the stamp of one frame from `image` (an ImageData, or anything with width, height and
 * RGBA `data`) whose width is the frame's full width. Returns {ms, frameNo}, or null when the
 * frame carries no valid stamp.
 */
export function decodeStamp(image) {
  const b = blockSize(image.width);
  if (image.width < COLUMNS * b || image.height < ROWS * b) return null;
  const ms = readWord(image, b, 0);
  const frameNo = ms === null ? null : readWord(image, b, 2);
  return frameNo === null ? null : { ms, frameNo };
}
