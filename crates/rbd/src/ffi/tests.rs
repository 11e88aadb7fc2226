use super::*;

#[test]
fn a_missing_library_is_a_clear_error_naming_the_package() {
    let Err(reason) = open("librados-not-installed.so.2", "librbd.so.1") else {
        panic!("a library that does not exist was loaded");
    };
    let e = Error::library_missing(&reason);
    assert_eq!(e.kind(), crate::ErrorKind::LibraryMissing);
    let text = e.to_string();
    assert!(text.contains("librados-not-installed.so.2"), "{text}");
    assert!(text.contains("apt-get install librbd1 librados2"), "{text}");
}
