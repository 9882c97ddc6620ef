#include "weft/runtime/worker.h"

namespace weft::runtime {

Worker::Worker(std::string name) : name_(std::move(name)), guard_(context_.get_executor()) {}

Worker::~Worker() {
  guard_.reset();
  context_.stop();
  thread_.reset();  // joins
}

void Worker::start() {
  thread_ = std::make_unique<Thread>(name_, [this] { context_.run(); });
}

void Worker::release() { guard_.reset(); }

void Worker::stopAndJoin() {
  guard_.reset();
  context_.stop();
  thread_.reset();
}

}  // namespace weft::runtime
