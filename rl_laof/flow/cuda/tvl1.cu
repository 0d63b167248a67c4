// Coarse-to-fine dual TV-L1 on the GPU: the same computation as rl_laof/flow/estimate.py, step for step.
// Every kernel is one thread per output pixel of a batch of (B, h, w) images; the host loop
// (rl_laof/flow/backends.py, estimate_flow_on_device) runs the pyramid, warps and iterations.
// Arithmetic mirrors the Numba code's types: values Numba holds in float64 are double here, values it
// holds in float32 are float, so that compiled without FMA contraction (--fmad=false) the two agree to
// rounding. Layouts (C order): images (B,h,w) f32, flow u / v (B,2,h,w) f32, dual p (B,4,h,w) f32.

#define PIXEL_INDEX                                                            \
    const long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x;      \
    if (n >= (long long)B * h * w) return;                                     \
    const long long hw = (long long)h * w;                                     \
    const int b = (int)(n / hw);                                               \
    const int y = (int)((n / w) % h);                                          \
    const int x = (int)(n % w);                                                \
    (void)b; (void)y; (void)x;

// Bilinear sample of one (h, w) image at (x, y), clamped to the image (estimate.py: _bilinear).
__device__ __forceinline__ double tvl1_bilinear(const float* img, const int h, const int w, double x, double y) {
    x = x < 0.0 ? 0.0 : x;
    x = x > w - 1.0 ? w - 1.0 : x;
    y = y < 0.0 ? 0.0 : y;
    y = y > h - 1.0 ? h - 1.0 : y;
    int x0 = 0, y0 = 0;
    if (w > 1) { x0 = (int)x; x0 = x0 < w - 2 ? x0 : w - 2; }
    if (h > 1) { y0 = (int)y; y0 = y0 < h - 2 ? y0 : h - 2; }
    const double fx = x - x0, fy = y - y0;
    const float* r0 = img + (long long)y0 * w;
    const float* r1 = r0 + w;
    return (1 - fx) * (1 - fy) * r0[x0] + fx * (1 - fy) * r0[x0 + 1] + (1 - fx) * fy * r1[x0]
           + fx * fy * r1[x0 + 1];
}

// 2x2 box average: src (B, sh, sw) -> dst (B, h, w) with h = sh / 2, w = sw / 2  (_downsample).
extern "C" __global__ void tvl1_downsample(const float* src, float* dst, const int B, const int h, const int w,
                                           const int sh, const int sw) {
    PIXEL_INDEX
    const float* s = src + (long long)b * sh * sw + (long long)(2 * y) * sw + 2 * x;
    const float sum = s[0] + s[sw] + s[1] + s[sw + 1];
    dst[n] = (float)(0.25 * sum);
}

// Flow from the coarse grid (B, 2, hs, ws) to (B, 2, h, w), pixel centres aligned, vectors rescaled
// (_upsample_flow).
extern "C" __global__ void tvl1_upsample_flow(const float* src, float* dst, const int B, const int hs, const int ws,
                                              const int h, const int w) {
    PIXEL_INDEX
    const double sy = (double)hs / h, sx = (double)ws / w;
    const double cx = (x + 0.5) * sx - 0.5, cy = (y + 0.5) * sy - 0.5;
    const long long hws = (long long)hs * ws;
    const float* s = src + (long long)b * 2 * hws;
    float* d = dst + (long long)b * 2 * hw + (long long)y * w + x;
    d[0] = (float)(tvl1_bilinear(s, hs, ws, cx, cy) / sx);
    d[hw] = (float)(tvl1_bilinear(s + hws, hs, ws, cx, cy) / sy);
}

// Central-difference gradient of I1, replicated border.
extern "C" __global__ void tvl1_gradient(const float* I1, float* gx, float* gy, const int B, const int h,
                                         const int w) {
    PIXEL_INDEX
    const float* r = I1 + (long long)b * hw + (long long)y * w;
    const int xl = x > 0 ? x - 1 : 0, xr = x < w - 1 ? x + 1 : w - 1;
    const int yu = y > 0 ? y - 1 : 0, yd = y < h - 1 ? y + 1 : h - 1;
    const float* img = I1 + (long long)b * hw;
    gx[n] = (float)(0.5 * (float)(r[xr] - r[xl]));
    gy[n] = (float)(0.5 * (float)(img[(long long)yd * w + x] - img[(long long)yu * w + x]));
}

// Linearise I1 around the current flow u: the warped gradient (Ix, Iy), its squared norm g2, and the
// constant part of the residual rho_c = I1(x+u) - grad I1 . u - I0.
extern "C" __global__ void tvl1_warp(const float* I0, const float* I1, const float* gx, const float* gy,
                                     const float* u, float* Ix, float* Iy, float* g2, float* rho_c, const int B,
                                     const int h, const int w) {
    PIXEL_INDEX
    const long long img = (long long)b * hw;
    const float u0 = u[2 * img + (long long)y * w + x], u1 = u[2 * img + hw + (long long)y * w + x];
    const double wx = x + (double)u0, wy = y + (double)u1;
    const double i1 = tvl1_bilinear(I1 + img, h, w, wx, wy);
    const double ix = tvl1_bilinear(gx + img, h, w, wx, wy);
    const double iy = tvl1_bilinear(gy + img, h, w, wx, wy);
    Ix[n] = (float)ix;
    Iy[n] = (float)iy;
    g2[n] = (float)(ix * ix + iy * iy);
    rho_c[n] = (float)(i1 - ix * u0 - iy * u1 - I0[n]);
}

// Point-wise thresholding of the data term: v = u + d (the primal step on the auxiliary flow).
extern "C" __global__ void tvl1_threshold(const float* u, const float* Ix, const float* Iy, const float* g2,
                                          const float* rho_c, float* v, const double lt, const int B, const int h,
                                          const int w) {
    PIXEL_INDEX
    const long long k = 2 * (long long)b * hw + (long long)y * w + x;
    const float ix = Ix[n], iy = Iy[n], gg = g2[n];
    const float rho = rho_c[n] + ix * u[k] + iy * u[k + hw];
    double d0, d1;
    if (rho < -lt * gg) {
        d0 = lt * ix;
        d1 = lt * iy;
    } else if (rho > lt * gg) {
        d0 = -lt * ix;
        d1 = -lt * iy;
    } else if (gg > 1e-10) {
        d0 = (double)(-rho * ix / gg);
        d1 = (double)(-rho * iy / gg);
    } else {
        d0 = 0.0;
        d1 = 0.0;
    }
    v[k] = (float)(u[k] + d0);
    v[k + hw] = (float)(u[k + hw] + d1);
}

// u = v + theta div p (backward differences, p = 0 outside the image).
extern "C" __global__ void tvl1_primal(const float* v, const float* p, float* u, const double theta, const int B,
                                       const int h, const int w) {
    PIXEL_INDEX
    for (int c = 0; c < 2; ++c) {
        const float* px = p + (4 * (long long)b + 2 * c) * hw;
        const float* py = px + hw;
        const long long o = (long long)y * w + x;
        double div = (x < w - 1 ? (double)px[o] : 0.0) - (x > 0 ? (double)px[o - 1] : 0.0);
        div += (y < h - 1 ? (double)py[o] : 0.0) - (y > 0 ? (double)py[o - w] : 0.0);
        const long long k = (2 * (long long)b + c) * hw + o;
        u[k] = (float)(v[k] + theta * div);
    }
}

// p <- (p + s grad u) / (1 + s |grad u|), s = tau / theta (forward differences).
extern "C" __global__ void tvl1_dual(const float* u, float* p, const double s, const int B, const int h,
                                     const int w) {
    PIXEL_INDEX
    for (int c = 0; c < 2; ++c) {
        const float* uc = u + (2 * (long long)b + c) * hw;
        const long long o = (long long)y * w + x;
        const double ux = x < w - 1 ? (double)(float)(uc[o + 1] - uc[o]) : 0.0;
        const double uy = y < h - 1 ? (double)(float)(uc[o + w] - uc[o]) : 0.0;
        const double ng = 1.0 + s * sqrt(ux * ux + uy * uy);
        float* px = p + (4 * (long long)b + 2 * c) * hw + o;
        float* py = px + hw;
        *px = (float)((*px + s * ux) / ng);
        *py = (float)((*py + s * uy) / ng);
    }
}

// 3x3 median of each flow channel, replicated border: src, dst (B*2, h, w)  (_median3).
extern "C" __global__ void tvl1_median3(const float* src, float* dst, const int B, const int h, const int w) {
    PIXEL_INDEX
    const float* a = src + (long long)b * hw;
    float buf[9];
    int k = 0;
    for (int dy = -1; dy <= 1; ++dy) {
        for (int dx = -1; dx <= 1; ++dx) {
            int yy = y + dy, xx = x + dx;
            yy = yy < 0 ? 0 : (yy > h - 1 ? h - 1 : yy);
            xx = xx < 0 ? 0 : (xx > w - 1 ? w - 1 : xx);
            buf[k++] = a[(long long)yy * w + xx];
        }
    }
    for (int i = 1; i < 9; ++i) {  // insertion sort: 9 values
        const float t = buf[i];
        int j = i - 1;
        while (j >= 0 && buf[j] > t) { buf[j + 1] = buf[j]; --j; }
        buf[j + 1] = t;
    }
    dst[n] = buf[4];
}
