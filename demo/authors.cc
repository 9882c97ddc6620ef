// weft-demo-authors: the demo's authors, a gRPC server (weft.demo.v1.Authors). See demo/README.md.
#include "demo.grpc.pb.h"
#include "demo/backend.h"

namespace weft::demo {
namespace {

class AuthorsService final : public v1::Authors::Service {
 public:
  explicit AuthorsService(FaultInjector& faults) : faults_(faults) {}

  grpc::Status GetAuthor(grpc::ServerContext*, const v1::GetAuthorRequest* req,
                         v1::Author* rsp) override {
    if (auto s = faults_.maybeFail(); !s.ok()) return s;
    for (const auto& a : kAuthors) {
      if (a.id == req->id()) {
        rsp->set_id(a.id);
        rsp->set_name(a.name);
        rsp->set_country(a.country);
        return grpc::Status::OK;
      }
    }
    faults_.notFound();
    return {grpc::StatusCode::NOT_FOUND, "no author " + std::to_string(req->id())};
  }

 private:
  FaultInjector& faults_;
};

}  // namespace
}  // namespace weft::demo

int main(int argc, char** argv) {
  using namespace weft::demo;
  BackendOptions o;
  o.name = "weft-demo-authors";
  o.port = 9091;
  CLI::App app{
      "weft-demo-authors: the authors of Weft's demo application, a gRPC server "
      "(weft.demo.v1.Authors: GetAuthor) over 5 authors. Unknown ids answer NOT_FOUND. A "
      "fraction of calls fail on purpose (--fail-rate) and every call can be slowed down "
      "(--latency-ms). Logs one statistics line per interval; stops on SIGTERM or SIGINT.",
      "weft-demo-authors"};
  addBackendFlags(app, o);
  CLI11_PARSE(app, argc, argv);
  FaultInjector faults(o);
  AuthorsService service(faults);
  return serveUntilSignalled(o, service, faults);
}
