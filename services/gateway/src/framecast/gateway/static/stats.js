/**
 * Once a second, gather what the viewer (and a test) wants to know about playback: frame rate,
 * bitrate, the jitter buffer (WebRTC) or live latency and buffer (HLS), how long the first
 * picture took, and the glass-to-glass latency read from test-pattern stamps. Shown in the
 * overlay and kept in window.framecastStats.
 */

const round = (value, digits = 0) => (value == null || Number.isNaN(value)
  ? null : Number(value.toFixed(digits)));

export class PlaybackStats {
  constructor(video, overlay, meter) {
    this.video = video;
    this.overlay = overlay;
    this.meter = meter; // a LatencyMeter, or null when the stream carries no stamps
    this.source = null;
    this.previous = null;
    this.timer = null;
    window.framecastStats = { mode: null };
  }

  /** Measure a WHEP peer connection (`pc`) or an hls.js instance (`hls`, or null: native HLS). */
  follow(mode, { pc = null, hls = null } = {}) {
    this.source = { mode, pc, hls, fragBits: 0, fragSeconds: 0, startupMs: null };
    this.previous = null;
    if (hls) {
      const source = this.source;
      hls.on(window.Hls.Events.FRAG_LOADED, (_, data) => {
        source.fragBits += (data.frag.stats?.loaded ?? 0) * 8;
        source.fragSeconds += data.frag.duration;
      });
    }
    this.meter?.start();
    this.timer ??= setInterval(() => this.sample(), 1000);
  }

  /** How long this session took from the click (or page load) to its first picture. */
  started(ms) {
    if (this.source) this.source.startupMs = Math.round(ms);
  }

  unfollow() {
    this.source = null;
    this.meter?.stop();
    clearInterval(this.timer);
    this.timer = null;
    window.framecastStats = { mode: null };
    this.overlay.replaceChildren();
  }

  async sample() {
    const source = this.source;
    if (!source) return;
    const now = performance.now();
    const quality = this.video.getVideoPlaybackQuality?.();
    const current = { at: now, frames: quality?.totalVideoFrames ?? 0 };
    const stats = { mode: source.mode, fps: null, bitrateKbps: null, startupMs: source.startupMs };

    if (source.pc) {
      const reports = await source.pc.getStats();
      reports.forEach((report) => {
        if (report.type !== 'inbound-rtp' || report.kind !== 'video') return;
        Object.assign(current, {
          bytes: report.bytesReceived,
          jitterDelay: report.jitterBufferDelay,
          emitted: report.jitterBufferEmittedCount,
        });
        stats.fps = round(report.framesPerSecond, 1);
        stats.framesDropped = report.framesDropped ?? 0;
        stats.packetsLost = report.packetsLost ?? 0;
      });
      const before = this.previous;
      if (before?.bytes != null && current.bytes != null) {
        stats.bitrateKbps = round(((current.bytes - before.bytes) * 8) / (now - before.at), 0);
        const emitted = current.emitted - before.emitted;
        stats.jitterBufferMs = emitted > 0
          ? round(((current.jitterDelay - before.jitterDelay) / emitted) * 1000, 0) : null;
      }
    } else {
      if (source.fragSeconds > 0) {
        stats.bitrateKbps = round(source.fragBits / source.fragSeconds / 1000, 0);
      }
      stats.latencyS = round(source.hls?.latency, 2);
      const { buffered, currentTime } = this.video;
      stats.bufferS = buffered.length ? round(buffered.end(buffered.length - 1) - currentTime, 2) : 0;
      if (this.previous) {
        stats.fps = round(((current.frames - this.previous.frames) * 1000) / (now - this.previous.at), 1);
      }
    }
    this.previous = current;
    stats.glassToGlass = this.meter?.summary() ?? null;
    stats.at = Date.now();
    if (this.source === source) {
      window.framecastStats = stats;
      this.render(stats);
    }
  }

  render(stats) {
    const g2g = stats.glassToGlass;
    const rows = [
      ['Via', stats.mode === 'whep' ? 'WebRTC' : 'HLS'],
      ['Frame rate', stats.fps == null ? '…' : `${stats.fps} fps`],
      ['Bitrate', stats.bitrateKbps == null ? '…' : `${stats.bitrateKbps} kbit/s`],
      stats.mode === 'whep'
        ? ['Jitter buffer', stats.jitterBufferMs == null ? '…' : `${stats.jitterBufferMs} ms`]
        : ['HLS latency', stats.latencyS == null ? '…' : `${stats.latencyS} s`],
      stats.mode === 'whep' ? null : ['Buffer', `${stats.bufferS} s`],
      stats.startupMs == null ? null : ['First picture', `${stats.startupMs} ms`],
      g2g ? ['Glass to glass', `p50 ${g2g.p50Ms} ms · p95 ${g2g.p95Ms} ms`] : null,
    ].filter(Boolean);
    this.overlay.replaceChildren(...rows.flatMap(([term, value]) => {
      const dt = document.createElement('dt');
      const dd = document.createElement('dd');
      dt.textContent = term;
      dd.textContent = value;
      return [dt, dd];
    }));
  }
}
