"""framecast.encoder: supervised FFmpeg processes publishing streams as H.264 over RTSP."""
