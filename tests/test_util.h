// SPDX-License-Identifier: Apache-2.0
// Shared helpers for the GoogleTest suites: a temporary folder per test,
// deterministic data patterns, running external programs (h5dump, the
// ckpt CLI, python3 with h5py) and the list of writer backends every
// file-system suite is parametrized over.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ckpt/ckpt.h"

namespace ckt {

// A fresh folder under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
  public:
    TempDir()
    {
        const char *base = getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ckpt-test-XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (!mkdtemp(buf.data()))
            ADD_FAILURE() << "mkdtemp failed: " << strerror(errno);
        path_ = buf.data();
    }
    ~TempDir()
    {
        if (!path_.empty() && !getenv("CKPT_TEST_KEEP"))
            remove_all(path_);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    const std::string &path() const { return path_; }
    std::string sub(const std::string &name) const { return path_ + "/" + name; }

    static void remove_all(const std::string &p)
    {
        struct stat st;
        if (lstat(p.c_str(), &st) != 0)
            return;
        if (S_ISDIR(st.st_mode)) {
            chmod(p.c_str(), 0755);
            if (DIR *d = opendir(p.c_str())) {
                while (struct dirent *de = readdir(d)) {
                    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        remove_all(p + "/" + de->d_name);
                }
                closedir(d);
            }
            rmdir(p.c_str());
        } else {
            unlink(p.c_str());
        }
    }

  private:
    std::string path_;
};

// Deterministic bytes: the same (seed, index) always gives the same byte.
inline uint8_t pattern_byte(uint64_t seed, uint64_t i)
{
    uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xBF58476D1CE4E5B9ull);
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return (uint8_t)x;
}

inline void fill(void *p, size_t n, uint64_t seed)
{
    auto *b = static_cast<uint8_t *>(p);
    for (size_t i = 0; i < n; i++)
        b[i] = pattern_byte(seed, i);
}

inline bool matches(const void *p, size_t n, uint64_t seed)
{
    auto *b = static_cast<const uint8_t *>(p);
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern_byte(seed, i))
            return false;
    return true;
}

// XORs the byte at off of the file at path with mask (a damaged byte at
// rest); false when the file cannot be read or written there.
inline bool flip_byte(const std::string &path, uint64_t off, uint8_t mask = 0x40)
{
    int fd = open(path.c_str(), O_RDWR);
    uint8_t c = 0;
    bool ok = fd >= 0 && pread(fd, &c, 1, (off_t)off) == 1;
    c = (uint8_t)(c ^ mask);
    ok = ok && pwrite(fd, &c, 1, (off_t)off) == 1;
    if (fd >= 0)
        close(fd);
    return ok;
}

// Runs a shell command; returns its exit status (or -1 when it did not exit).
inline int run(const std::string &cmd, std::string *out = nullptr)
{
    std::string full = cmd + " 2>&1";
    FILE *f = popen(full.c_str(), "r");
    if (!f)
        return -1;
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        text.append(buf, n);
    int st = pclose(f);
    if (out)
        *out = text;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// A whole file's bytes (empty when it cannot be read).
inline std::string read_file(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Replaces path's content with bytes, or fails the test.
inline void write_file(const std::string &path, const std::string &bytes)
{
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), (std::streamsize)bytes.size());
    ASSERT_TRUE(f.good()) << path;
}

inline std::string quote(const std::string &s)
{
    std::string q = "'";
    for (char c : s) {
        if (c == '\'')
            q += "'\\''";
        else
            q += c;
    }
    return q + "'";
}

// Runs a command line (in a subshell, so its stderr cannot mix into its
// stdout) with stdout to out_path and stderr to err_path; *log gets both,
// for a failure message.  Returns the exit status.
inline int run_split(const std::string &cmd, const std::string &out_path,
                     const std::string &err_path, std::string *log)
{
    int rc = run("(" + cmd + " >" + quote(out_path) + " 2>" + quote(err_path) + ")");
    *log = read_file(err_path) + read_file(out_path);
    return rc;
}

// Runs the Python source py (written to path) with args: 0 when it exits
// 0, as it does when its asserts hold; *out its output.
inline int run_python(const std::string &path, const std::string &py, const std::string &args,
                      std::string *out)
{
    write_file(path, py);
    return run("python3 " + quote(path) + " " + args, out);
}

// Every *.h5 file under dir, recursively.
inline void h5_files(const std::string &dir, std::vector<std::string> *out)
{
    DIR *d = opendir(dir.c_str());
    if (!d)
        return;
    while (struct dirent *de = readdir(d)) {
        std::string n = de->d_name;
        if (n == "." || n == "..")
            continue;
        std::string p = dir + "/" + n;
        struct stat st;
        if (lstat(p.c_str(), &st) != 0)
            continue;
        // A save in progress or a deletion under way is not a checkpoint.
        if (S_ISDIR(st.st_mode) && n.find(".partial-") == std::string::npos &&
            n.find(".trash-") == std::string::npos)
            h5_files(p, out);
        else if (n.size() > 3 && n.compare(n.size() - 3, 3, ".h5") == 0)
            out->push_back(p);
    }
    closedir(d);
}

// h5dump must read every HDF5 file a test wrote: returns how many it read.
// Every file gets `h5dump -H` (all groups, datasets, types and attributes);
// files up to 8 MiB also get a full dump of their data.  Larger ones are
// not dumped as text because HDF5's soft conversion of bf16 prints about a
// megabyte per second; tests/test_h5py.cpp reads their data through h5py.
inline int expect_h5dump_all(const std::string &dir)
{
    std::vector<std::string> files;
    h5_files(dir, &files);
    for (const auto &f : files) {
        std::string out;
        int rc = run(std::string(CKPT_H5DUMP) + " -H " + quote(f) + " > /dev/null", &out);
        EXPECT_EQ(rc, 0) << "h5dump -H failed on " << f << ":\n" << out;
        struct stat st;
        if (stat(f.c_str(), &st) == 0 && st.st_size <= (8 << 20)) {
            rc = run(std::string(CKPT_H5DUMP) + " " + quote(f) + " > /dev/null", &out);
            EXPECT_EQ(rc, 0) << "h5dump failed on " << f << ":\n" << out;
        }
    }
    return (int)files.size();
}

// The writer backends every file-system suite runs on.  Where the kernel
// refuses io_uring, the uring instances skip with the reason (WriterTest).
inline std::vector<ckpt_io> writers()
{
    return {CKPT_IO_PWRITE, CKPT_IO_URING};
}

// Empty when the writer can be used here, else why not.
inline std::string writer_unavailable(ckpt_io io)
{
    TempDir tmp;
    std::string dir = tmp.sub("probe");
    ckpt_config cfg;
    ckpt_config_init(&cfg);
    cfg.dir = dir.c_str();
    cfg.io = io;
    cfg.device = CKPT_DEVICE_HOST; // a probe of the writer: no device needed
    cfg.staging_bytes = 4u << 20;
    cfg.log_level = CKPT_LOG_OFF;
    ckpt_ctx *ctx = nullptr;
    int rc = ckpt_open(&cfg, nullptr, &ctx);
    std::string why = rc == CKPT_EUNSUPPORTED ? ckpt_last_error(nullptr) : "";
    ckpt_close(ctx);
    return why;
}

inline const char *writer_name(ckpt_io io)
{
    switch (io) {
    case CKPT_IO_PWRITE:
        return "pwrite";
    case CKPT_IO_URING:
        return "uring";
    default:
        return "auto";
    }
}

// Base of the suites parametrized over writers: skips, with the reason,
// a writer this machine refuses.
class WriterTest : public ::testing::TestWithParam<ckpt_io> {
  protected:
    void SetUp() override
    {
        std::string why = writer_unavailable(GetParam());
        if (!why.empty())
            GTEST_SKIP() << writer_name(GetParam()) << " writer unavailable: " << why;
    }
};

// Collects save events (ckpt_config.event_fn) for assertions.
struct Events {
    std::vector<ckpt_event> ev;
    std::vector<std::string> msg;
    static void fn(void *user, const ckpt_event *e)
    {
        auto *self = static_cast<Events *>(user);
        self->ev.push_back(*e);
        self->msg.push_back(e->message);
    }
    void attach(ckpt_config *cfg)
    {
        cfg->event_fn = fn;
        cfg->event_user = this;
    }
    std::vector<ckpt_event_kind> kinds(int64_t step) const
    {
        std::vector<ckpt_event_kind> k;
        for (const auto &e : ev)
            if (e.step == step)
                k.push_back(e.kind);
        return k;
    }
};

// Save events for tests that must know where a save is: waits for a step's
// FAILED event, and can hold a step's save at its STARTED event (event_fn
// runs on a runtime thread) until released.
struct EventGate {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int64_t> failed;
    int64_t hold_step = -1; // STARTED of this step waits for release()
    bool released = false;
    static void fn(void *user, const ckpt_event *e)
    {
        auto *g = static_cast<EventGate *>(user);
        std::unique_lock<std::mutex> lk(g->mu);
        if (e->kind == CKPT_EVENT_FAILED) {
            g->failed.push_back(e->step);
            g->cv.notify_all();
        }
        if (e->kind == CKPT_EVENT_STARTED && e->step == g->hold_step)
            g->cv.wait(lk, [g] { return g->released; });
    }
    void attach(ckpt_config *cfg)
    {
        cfg->event_fn = fn;
        cfg->event_user = this;
    }
    void wait_failed(int64_t step)
    {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return std::find(failed.begin(), failed.end(), step) != failed.end(); });
    }
    void release()
    {
        std::lock_guard<std::mutex> lk(mu);
        released = true;
        cv.notify_all();
    }
};

// Collects log lines (ckpt_config.log_fn); safe while runtime threads log.
struct Logs {
    std::mutex mu;
    std::vector<std::string> lines;
    static void fn(void *user, ckpt_log_level, const char *msg)
    {
        auto *self = static_cast<Logs *>(user);
        std::lock_guard<std::mutex> g(self->mu);
        self->lines.push_back(msg);
    }
    // Whether one line holds both a and b.
    bool has(const std::string &a, const std::string &b = "")
    {
        std::lock_guard<std::mutex> g(mu);
        for (const auto &l : lines)
            if (l.find(a) != std::string::npos && l.find(b) != std::string::npos)
                return true;
        return false;
    }
    // How many lines hold a.
    int count(const std::string &a)
    {
        std::lock_guard<std::mutex> g(mu);
        int n = 0;
        for (const auto &l : lines)
            n += l.find(a) != std::string::npos;
        return n;
    }
    void clear()
    {
        std::lock_guard<std::mutex> g(mu);
        lines.clear();
    }
    // The first line holding `what`, or "".
    std::string find(const std::string &what)
    {
        std::lock_guard<std::mutex> g(mu);
        for (const auto &l : lines)
            if (l.find(what) != std::string::npos)
                return l;
        return "";
    }
    // Points cfg's log at this collector, at `level` and above.
    void attach(ckpt_config *cfg, ckpt_log_level level = CKPT_LOG_WARN)
    {
        cfg->log_fn = fn;
        cfg->log_user = this;
        cfg->log_level = level;
    }
};

// A config with test-friendly defaults (small staging, quiet logs); on
// the CUDA backend in the suites' cudasim builds (tensor_mem.h).
inline ckpt_config config(const std::string &dir, ckpt_io io = CKPT_IO_PWRITE)
{
    ckpt_config cfg;
    ckpt_config_init(&cfg);
    cfg.dir = dir.c_str();
    cfg.io = io;
#if defined(CKPT_TEST_DEVICE_CUDA) && CKPT_TEST_DEVICE_CUDA
    cfg.device = CKPT_DEVICE_CUDA;
#endif
    cfg.staging_bytes = 16u << 20;
    cfg.chunk_bytes = 1u << 20;
    cfg.log_level = getenv("CKPT_TEST_LOG") ? CKPT_LOG_DEBUG : CKPT_LOG_OFF;
    return cfg;
}

// Opens a context or fails the test.
inline ckpt_ctx *open_ctx(const ckpt_config &cfg)
{
    ckpt_ctx *ctx = nullptr;
    int rc = ckpt_open(&cfg, nullptr, &ctx);
    EXPECT_EQ(rc, 0) << ckpt_last_error(nullptr);
    return ctx;
}

// Saves a step and waits for its commit.
inline int save_wait(ckpt_ctx *ctx, int64_t step)
{
    ckpt_ticket t = 0;
    int rc = ckpt_save(ctx, step, nullptr, &t);
    if (rc)
        return rc;
    rc = ckpt_fence(ctx, nullptr);
    if (rc)
        return rc;
    return ckpt_wait(ctx, t, -1);
}

inline std::string step_dir(const std::string &dir, int64_t step)
{
    char b[32];
    snprintf(b, sizeof b, "/step-%012lld", (long long)step);
    return dir + b;
}

inline bool exists(const std::string &p)
{
    struct stat st;
    return lstat(p.c_str(), &st) == 0;
}

inline std::vector<std::string> list_dir(const std::string &dir)
{
    std::vector<std::string> v;
    if (DIR *d = opendir(dir.c_str())) {
        while (struct dirent *de = readdir(d)) {
            std::string n = de->d_name;
            if (n != "." && n != "..")
                v.push_back(n);
        }
        closedir(d);
    }
    return v;
}

// A step's folder name, "step-" and 12 digits.
inline std::string step_name(int64_t step)
{
    return step_dir("", step).substr(1);
}

// The committed step folders of dir (no partial ones), sorted.
inline std::vector<std::string> committed(const std::string &dir)
{
    std::vector<std::string> out;
    for (const auto &n : list_dir(dir))
        if (n.rfind("step-", 0) == 0 && n.find('.') == std::string::npos)
            out.push_back(n);
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace ckt
