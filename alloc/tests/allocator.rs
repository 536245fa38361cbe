//! The allocator serves a program's allocations through mimalloc, with eager arena commits
//! turned off by the time anything has been allocated.
#![allow(unsafe_code)]

#[global_allocator]
static ALLOCATOR: basidia_alloc::Allocator = basidia_alloc::Allocator;

#[test]
fn allocations_go_through_mimalloc_with_eager_commit_off() {
    let mut blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1 << (i % 16)]).collect();
    blocks[3].resize(1 << 20, 7);
    let threads: Vec<_> = blocks
        .into_iter()
        .map(|b| std::thread::spawn(move || b.iter().map(|&x| u64::from(x)).sum::<u64>()))
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(total > 0);
    let block = Box::new([0u8; 100]);
    // SAFETY: plain queries of mimalloc's state.
    unsafe {
        assert!(libmimalloc_sys::mi_is_in_heap_region(block.as_ptr().cast()));
        assert_eq!(libmimalloc_sys::mi_option_get(4), 0);
    }
}
