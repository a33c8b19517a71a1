// SPDX-License-Identifier: Apache-2.0
// Helpers of the bad-input suite (test_badinput.cpp): error assertions,
// file-tree snapshots that show any change outside DIR, an environment
// guard for the CKPT_* overrides, and forged manifest user blocks.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <xxhash.h>

#include "test_util.h"

namespace bad {

using testing::AssertionFailure;
using testing::AssertionResult;
using testing::AssertionSuccess;

constexpr auto npos = std::string::npos;

// rc must be `want`, and the last error (of ctx, or of the thread when ctx
// is NULL) must be non-empty and mention `needle`.
inline AssertionResult fails(int rc, int want, const ckpt_ctx *ctx, const std::string &needle)
{
    std::string msg = ckpt_last_error(ctx);
    if (rc != want)
        return AssertionFailure() << "returned " << ckpt_err_name(rc) << " (" << rc
                                  << "), expected " << ckpt_err_name(want)
                                  << "; message: " << msg;
    if (msg.empty())
        return AssertionFailure() << ckpt_err_name(rc) << " with an empty message";
    if (!needle.empty() && msg.find(needle) == npos)
        return AssertionFailure() << "message \"" << msg << "\" does not mention \"" << needle
                                  << "\"";
    return AssertionSuccess();
}

using ckt::read_file;
using ckt::write_file;

inline std::string random_bytes(size_t n, uint64_t seed)
{
    std::string s(n, '\0');
    ckt::fill(&s[0], n, seed);
    return s;
}

// Everything under root, recursively, without following symlinks: path ->
// type, size, mtime, content hash or link target.  Two snapshots differ
// when anything was created, removed or changed.
using Snapshot = std::map<std::string, std::string>;

inline void snap_into(const std::string &root, const std::string &rel, Snapshot *out)
{
    std::string p = rel.empty() ? root : root + "/" + rel;
    struct stat st;
    if (lstat(p.c_str(), &st) != 0)
        return;
    std::string v = std::to_string(st.st_mode) + " " + std::to_string(st.st_size);
    if (S_ISREG(st.st_mode)) {
        v += " " + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
        std::string c = read_file(p);
        v += " " + std::to_string(XXH3_64bits(c.data(), c.size()));
    } else if (S_ISLNK(st.st_mode)) {
        char buf[4096];
        ssize_t n = readlink(p.c_str(), buf, sizeof buf);
        v += " -> " + std::string(buf, n > 0 ? (size_t)n : 0);
    }
    (*out)[rel.empty() ? "." : rel] = v;
    if (S_ISDIR(st.st_mode)) {
        for (const std::string &n : ckt::list_dir(p))
            snap_into(root, rel.empty() ? n : rel + "/" + n, out);
    }
}

inline Snapshot snapshot(const std::string &root)
{
    Snapshot s;
    snap_into(root, "", &s);
    return s;
}

// Entries of `after` that are new or changed relative to `before`, and
// entries of `before` that are gone.
inline std::vector<std::string> changes(const Snapshot &before, const Snapshot &after)
{
    std::vector<std::string> d;
    for (const auto &kv : after) {
        auto it = before.find(kv.first);
        if (it == before.end())
            d.push_back("+" + kv.first);
        else if (it->second != kv.second)
            d.push_back("~" + kv.first);
    }
    for (const auto &kv : before)
        if (!after.count(kv.first))
            d.push_back("-" + kv.first);
    return d;
}

inline std::string join(const std::vector<std::string> &v)
{
    std::string s;
    for (const auto &x : v)
        s += x + "\n";
    return s;
}

// A configuration edit that ckpt_open must refuse.
struct BadConfig {
    const char *what;
    void (*edit)(ckpt_config *);
    const char *says; // the refusal's message mentions this
};

// Each edit, applied to a test config, makes ckpt_open return CKPT_EINVAL
// with a message mentioning `says`, leave *out NULL and create nothing.
template <size_t N> void expect_configs_refused(const BadConfig (&cases)[N])
{
    ckt::TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    for (const BadConfig &bc : cases) {
        SCOPED_TRACE(bc.what);
        ckpt_config cfg = ckt::config(dir);
        bc.edit(&cfg);
        ckpt_ctx *ctx = reinterpret_cast<ckpt_ctx *>(0x1);
        EXPECT_TRUE(fails(ckpt_open(&cfg, nullptr, &ctx), CKPT_EINVAL, nullptr, bc.says));
        EXPECT_EQ(ctx, nullptr);
        if (ctx && ctx != reinterpret_cast<ckpt_ctx *>(0x1))
            ckpt_close(ctx);
        EXPECT_FALSE(ckt::exists(dir)) << "a refused config created " << dir;
        EXPECT_TRUE(ckt::list_dir(tmp.path()).empty());
    }
}

// A configuration edit that ckpt_open must accept.
struct OkConfig {
    const char *what;
    void (*edit)(ckpt_config *);
};

// Each edit, applied to a test config on a folder of its own, opens; then
// use(ctx) checks the context works and ckpt_close must return 0.
template <size_t N, class F> void expect_configs_accepted(const OkConfig (&cases)[N], F use)
{
    ckt::TempDir tmp;
    int i = 0;
    for (const OkConfig &o : cases) {
        SCOPED_TRACE(o.what);
        std::string dir = tmp.sub("ok" + std::to_string(i++));
        ckpt_config cfg = ckt::config(dir);
        o.edit(&cfg);
        ckpt_ctx *ctx = nullptr;
        ASSERT_EQ(ckpt_open(&cfg, nullptr, &ctx), 0) << ckpt_last_error(nullptr);
        use(ctx);
        EXPECT_EQ(ckpt_close(ctx), 0);
    }
}

// Saves/restores the CKPT_* variables ckpt_config_init reads, and clears them.
class EnvGuard {
  public:
    EnvGuard()
    {
        for (const char *n : kVars) {
            const char *v = getenv(n);
            old_[n] = v ? std::make_pair(true, std::string(v)) : std::make_pair(false, std::string());
            unsetenv(n);
        }
    }
    ~EnvGuard()
    {
        for (const auto &kv : old_) {
            if (kv.second.first)
                setenv(kv.first.c_str(), kv.second.second.c_str(), 1);
            else
                unsetenv(kv.first.c_str());
        }
    }

  private:
    static constexpr const char *kVars[] = {"CKPT_DIR",
                                            "CKPT_KEEP_LAST",
                                            "CKPT_IO",
                                            "CKPT_LOG",
                                            "CKPT_POLICY_EVERY_STEPS",
                                            "CKPT_POLICY_EVERY_S",
                                            "CKPT_LOCAL_DIR",
                                            "CKPT_DURABLE_EVERY",
                                            "CKPT_LOCAL_KEEP_LAST",
                                            "CKPT_DRAIN_AT_CLOSE"};
    std::map<std::string, std::pair<bool, std::string>> old_;
};

// manifest.h5's user block (io/manifest.h): magic, version, length and
// XXH3 of everything after the 512 bytes; `rest` becomes a file that passes
// the whole-file checksum whatever it holds.
inline std::string sealed_manifest(const std::string &rest, uint8_t version = 1)
{
    std::string ub(512, '\0');
    memcpy(&ub[0], "CKPTMAN1", 8);
    ub[8] = (char)version;
    uint64_t len = 512 + rest.size(), h = XXH3_64bits(rest.data(), rest.size());
    for (int k = 0; k < 8; k++) {
        ub[16 + k] = (char)(len >> (8 * k));
        ub[24 + k] = (char)(h >> (8 * k));
    }
    return ub + rest;
}

// Gives the user block of manifest bytes m the header hash of format 1.1
// (flag 1 in bytes 12..15, XXH3-64 of the first 512 bytes with bytes
// 32..39 as zero stored there), so that whatever it says reads as intact.
inline void hash_user_block(std::string &m)
{
    m[12] = (char)(m[12] | 1);
    memset(&m[32], 0, 8);
    uint64_t h = XXH3_64bits(m.data(), 512);
    for (int k = 0; k < 8; k++)
        m[32 + k] = (char)(h >> (8 * k));
}

} // namespace bad
