// Shared by the addon's network-namespace calls (netns.cc, podnet.cc): socket
// options, failures, and running work on a short-lived thread inside one or more
// namespaces (neither the main thread nor a libuv pool thread ever changes namespace).
#pragma once
#include <napi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ambient {

struct SocketOptions {
  int family = 4;
  int64_t mark = -1;
  bool transparent = false;
  std::string bind_to_device;
  bool reuse_addr = false;
  bool reuse_port = false;
  std::string bind_address;
  int bind_port = 0;
  int listen_backlog = -1;
};

struct Failure {
  int err = 0;
  std::string syscall;
};

/** Runs `work` on a fresh thread inside the netns at `path`; the thread then ends. */
Failure InNetns(const std::string& path, const std::function<Failure()>& work);
/** One fresh thread enters each namespace of `paths` in turn and runs work(i) there; failures[i] says how each went. */
void InEachNetns(const std::vector<std::string>& paths, const std::function<Failure(size_t)>& work, std::vector<Failure>* failures);

Failure CreateSocket(int family, int* out);
/** Options, bind and listen, on any thread (a socket keeps the netns it was made in). */
Failure ConfigureSocket(int fd, const SocketOptions& o);
Failure MakeSocket(const SocketOptions& o, int* out);
std::string FailureMessage(const Failure& f, const std::string& path, const SocketOptions& o);
/** The options object of socketInNetns; throws EINVAL on a bad one. */
SocketOptions ParseSocketOptions(Napi::Env env, const Napi::Value& value);

}  // namespace ambient
