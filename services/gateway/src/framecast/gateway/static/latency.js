/**
 * Glass-to-glass latency of a test-pattern stream: for every frame the browser presents, read
 * the wall-clock stamp in its pixels and compare it with the moment the frame is displayed.
 * Producer and browser clocks must agree (same host, or NTP), as for any one-way measurement.
 */

import { decodeStamp, stripHeight } from './pattern.js';

const WINDOW_MS = 10000;

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export class LatencyMeter {
  constructor(video) {
    this.video = video;
    this.samples = []; // {at, ms}, oldest first
    this.frameNo = null;
    this.canvas = document.createElement('canvas');
    this.context = this.canvas.getContext('2d', { willReadFrequently: true });
    this.handle = null;
  }

  get supported() {
    return 'requestVideoFrameCallback' in HTMLVideoElement.prototype;
  }

  start() {
    if (!this.supported || this.handle !== null) return;
    const onFrame = (now, frame) => {
      this.handle = this.video.requestVideoFrameCallback(onFrame);
      this.measure(now, frame);
    };
    this.handle = this.video.requestVideoFrameCallback(onFrame);
  }

  stop() {
    if (this.handle !== null) this.video.cancelVideoFrameCallback(this.handle);
    this.handle = null;
  }

  measure(now, frame) {
    const { width } = frame;
    const height = Math.min(stripHeight(width), frame.height);
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    let stamp;
    try {
      this.context.drawImage(this.video, 0, 0, width, height, 0, 0, width, height);
      stamp = decodeStamp(this.context.getImageData(0, 0, width, height));
    } catch {
      this.stop(); // a tainted canvas (cross-origin video without CORS): nothing to measure
      return;
    }
    if (!stamp) return;
    const shownAt = performance.timeOrigin + frame.expectedDisplayTime;
    this.samples.push({ at: now, ms: shownAt - stamp.ms });
    this.frameNo = stamp.frameNo;
    while (this.samples.length && this.samples[0].at < now - WINDOW_MS) this.samples.shift();
  }

  /** p50/p95 over the last 10 s, or null when no stamped frame was seen in that time. */
  summary() {
    const recent = this.samples.filter((s) => s.at >= performance.now() - WINDOW_MS);
    if (!recent.length) return null;
    const sorted = recent.map((s) => s.ms).sort((a, b) => a - b);
    return {
      p50Ms: Math.round(percentile(sorted, 50)),
      p95Ms: Math.round(percentile(sorted, 95)),
      lastMs: Math.round(recent[recent.length - 1].ms),
      samples: recent.length,
      frameNo: this.frameNo,
    };
  }
}
