// weft-demo-books: the demo's book catalog, a gRPC server (weft.demo.v1.Books). See demo/README.md.
#include "demo.grpc.pb.h"
#include "demo/backend.h"

namespace weft::demo {
namespace {

class BooksService final : public v1::Books::Service {
 public:
  explicit BooksService(FaultInjector& faults) : faults_(faults) {}

  grpc::Status ListBooks(grpc::ServerContext*, const v1::ListBooksRequest* req,
                         v1::ListBooksResponse* rsp) override {
    if (auto s = faults_.maybeFail(); !s.ok()) return s;
    for (const auto& b : kBooks) {
      if (req->author_id() == 0 || req->author_id() == b.author_id) fill(b, rsp->add_books());
    }
    return grpc::Status::OK;
  }

  grpc::Status GetBook(grpc::ServerContext*, const v1::GetBookRequest* req,
                       v1::Book* rsp) override {
    if (auto s = faults_.maybeFail(); !s.ok()) return s;
    for (const auto& b : kBooks) {
      if (b.id == req->id()) {
        fill(b, rsp);
        return grpc::Status::OK;
      }
    }
    faults_.notFound();
    return {grpc::StatusCode::NOT_FOUND, "no book " + std::to_string(req->id())};
  }

 private:
  static void fill(const BookRow& b, v1::Book* out) {
    out->set_id(b.id);
    out->set_title(b.title);
    out->set_author_id(b.author_id);
    out->set_year(b.year);
  }
  FaultInjector& faults_;
};

}  // namespace
}  // namespace weft::demo

int main(int argc, char** argv) {
  using namespace weft::demo;
  BackendOptions o;
  o.name = "weft-demo-books";
  o.port = 9090;
  CLI::App app{
      "weft-demo-books: the book catalog of Weft's demo application, a gRPC server "
      "(weft.demo.v1.Books: ListBooks, GetBook) over 12 books by 5 authors. Unknown ids answer "
      "NOT_FOUND. A fraction of calls fail on purpose (--fail-rate) so the mesh's metrics have "
      "something to show. Logs one statistics line per interval; stops on SIGTERM or SIGINT.",
      "weft-demo-books"};
  addBackendFlags(app, o);
  CLI11_PARSE(app, argc, argv);
  FaultInjector faults(o);
  BooksService service(faults);
  return serveUntilSignalled(o, service, faults);
}
