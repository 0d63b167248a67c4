// Exact optical flow by reprojection: one thread per displayed pixel of frame t.
// The same computation as rl_laof/flow/exact.py (_exact_flow_kernel); see its docstring.
// Layouts (C order): depth (B,2,H,W) f32, geom (B,2,H,W) i16, cam_pos (B,2,3) f64, cam_mat (B,2,3,3) f64,
// gpos (B,2,G,3) f64, gmat (B,2,G,3,3) f64, inv0 / aff1 (B,2,3) f64; out flow (B,2,H,W) f32, valid (B,H,W) u8.

extern "C" __global__ void exact_flow(const float* depth, const short* geom, const double* cam_pos,
                                      const double* cam_mat, const double* gpos, const double* gmat,
                                      const double* inv0, const double* aff1, const int B, const int H,
                                      const int W, const int G, const double f, const double depth_tol,
                                      float* flow, unsigned char* valid) {
    const long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= (long long)B * H * W) return;
    const int i = (int)(n / ((long long)H * W));
    const int qy = (int)((n / W) % H);
    const int qx = (int)(n % W);
    const long long hw = (long long)H * W;
    float* fx = flow + ((long long)i * 2) * hw + (long long)qy * W + qx;
    float* fy = fx + hw;
    unsigned char* ok = valid + (long long)i * hw + (long long)qy * W + qx;
    *fx = 0.0f; *fy = 0.0f; *ok = 0;
    const double cx = (W - 1) / 2.0, cy = (H - 1) / 2.0;
    const double* a0 = inv0 + i * 6;
    const double* a1 = aff1 + i * 6;
    const double rx = a0[0] * qx + a0[1] * qy + a0[2];
    const double ry = a0[3] * qx + a0[4] * qy + a0[5];
    const int ix = (int)rint(rx), iy = (int)rint(ry);
    if (ix < 0 || ix >= W || iy < 0 || iy >= H) return;
    const double d = depth[((long long)i * 2) * hw + (long long)iy * W + ix];
    const int g = geom[((long long)i * 2) * hw + (long long)iy * W + ix];
    const double px = (rx - cx) / f, py = -(ry - cy) / f, pz = -1.0;
    const double* R0 = cam_mat + (i * 2) * 9;
    const double* R1 = cam_mat + (i * 2 + 1) * 9;
    const double* c0 = cam_pos + (i * 2) * 3;
    const double* c1 = cam_pos + (i * 2 + 1) * 3;
    double wx, wy, wz;
    if (g < 0) {  // sky: a direction, rotated by the camera only
        wx = R0[0] * px + R0[1] * py + R0[2] * pz;
        wy = R0[3] * px + R0[4] * py + R0[5] * pz;
        wz = R0[6] * px + R0[7] * py + R0[8] * pz;
    } else {
        const double Px = c0[0] + d * (R0[0] * px + R0[1] * py + R0[2] * pz);
        const double Py = c0[1] + d * (R0[3] * px + R0[4] * py + R0[5] * pz);
        const double Pz = c0[2] + d * (R0[6] * px + R0[7] * py + R0[8] * pz);
        const double* x0 = gpos + ((long long)(i * 2) * G + g) * 3;
        const double* x1 = gpos + ((long long)(i * 2 + 1) * G + g) * 3;
        const double* G0 = gmat + ((long long)(i * 2) * G + g) * 9;
        const double* G1 = gmat + ((long long)(i * 2 + 1) * G + g) * 9;
        const double ex = Px - x0[0], ey = Py - x0[1], ez = Pz - x0[2];
        const double lx = G0[0] * ex + G0[3] * ey + G0[6] * ez;
        const double ly = G0[1] * ex + G0[4] * ey + G0[7] * ez;
        const double lz = G0[2] * ex + G0[5] * ey + G0[8] * ez;
        wx = x1[0] + G1[0] * lx + G1[1] * ly + G1[2] * lz - c1[0];
        wy = x1[1] + G1[3] * lx + G1[4] * ly + G1[5] * lz - c1[1];
        wz = x1[2] + G1[6] * lx + G1[7] * ly + G1[8] * lz - c1[2];
    }
    const double c1x = R1[0] * wx + R1[3] * wy + R1[6] * wz;
    const double c1y = R1[1] * wx + R1[4] * wy + R1[7] * wz;
    const double c1z = R1[2] * wx + R1[5] * wy + R1[8] * wz;
    const double z = -c1z;
    if (z <= 1e-6) return;
    const double r1x = f * c1x / z + cx, r1y = -f * c1y / z + cy;
    const int jx = (int)rint(r1x), jy = (int)rint(r1y);
    if (jx < 0 || jx >= W || jy < 0 || jy >= H) return;
    const long long t1 = ((long long)i * 2 + 1) * hw + (long long)jy * W + jx;
    if ((int)geom[t1] != g) return;
    if (g >= 0 && fabs((double)depth[t1] - z) > depth_tol * z) return;
    *fx = (float)(a1[0] * r1x + a1[1] * r1y + a1[2] - qx);
    *fy = (float)(a1[3] * r1x + a1[4] * r1y + a1[5] - qy);
    *ok = 1;
}
