"""Videos for the multimodal methods: reading a video list, decoding frames with PyAV, saving them as the
frame files that rows refer to, and a CLIP/SigLIP scorer of texts against frames (VideoSAVi's filter)."""
