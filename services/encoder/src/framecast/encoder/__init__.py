"""framecast.encoder: supervised FFmpeg processes that publish framecast streams as H.264 over RTSP."""
