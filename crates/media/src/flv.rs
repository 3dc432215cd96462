//! FLV tags as they arrive in RTMP audio/video messages (and in `.flv` files), turned into
//! codec-neutral [`MediaEvent`](crate::MediaEvent)s.
